#!/bin/sh
# The example handler behind these state machines, for the exec handler.
# It reads the task input (JSON) on stdin and, with plain POSIX sh:
#   {"reject": true, ...}  -> declares the failure Orders.Rejected (exit 1)
#   {"seconds": N, ...}    -> works N seconds first (heartbeats keep it alive)
#   otherwise              -> {"processed": <the input>}
set -eu
input=$(cat)
case "$input" in
  *'"reject":true'* | *'"reject": true'*)
    echo '{"error":"Orders.Rejected","cause":"this order was designed to be rejected"}'
    exit 1
    ;;
esac
seconds=$(printf '%s' "$input" | sed -n 's/.*"seconds": *\([0-9][0-9]*\).*/\1/p')
if [ -n "$seconds" ]; then sleep "$seconds"; fi
printf '{"processed":%s}\n' "$input"
