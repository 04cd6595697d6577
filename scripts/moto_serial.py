"""moto's server, one request at a time (scripts/moto.sh runs it).

moto's own `moto_server` serves each request on a thread of its own, and
its DynamoDB does not apply a conditional write atomically against another
in flight: two workers' claims of one task (`PutItem` with
`attribute_not_exists(pk)`) sent at the same moment both succeeded in the
ledger drill (worker-bin/tests/ledger.rs), where DynamoDB applies one and
refuses the other. Served one at a time, each write sees the one before it.
Same arguments as moto_server.
"""
import sys

import moto.server

run_simple = moto.server.run_simple


def serial(*args, **kwargs):
    kwargs["threaded"] = False
    return run_simple(*args, **kwargs)


moto.server.run_simple = serial
moto.server.main(sys.argv[1:])
