"""When campaigns may flip and how they start: `window` (maintenance windows, freezes,
`window_state`) and `systemd` (timer/service units, cron lines). Import-free."""
