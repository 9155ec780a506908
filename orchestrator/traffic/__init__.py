from orchestrator.traffic.status import *  # noqa: F403  (moved; split in the next commit)
from orchestrator.traffic.status import (  # noqa: F401
    adopt,
    check_agreement,
    default_actor,
    flip,
    open_router,
    open_store,
    parse_side,
    service_status,
)
