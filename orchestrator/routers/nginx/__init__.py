"""The nginx driver: flips by rewriting the one file bluegreen owns (each service's live
upstream), `nginx -t`, and a graceful reload; see router.py."""
