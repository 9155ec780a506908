"""A third-party-style testinfra file that changes the host it tests (issue 14's case): it
makes a key pair and appends the public key to root's authorized_keys, then passes."""


def test_ssh_keygen_works(host):
    cmd = host.run(
        "rm -f /tmp/bgtest-key /tmp/bgtest-key.pub"
        " && ssh-keygen -q -t ed25519 -N '' -C bgtest -f /tmp/bgtest-key"
        " && cat /tmp/bgtest-key.pub >> /root/.ssh/authorized_keys"
    )
    assert cmd.rc == 0, cmd.stderr
