#!/bin/sh
# Creates the twinlayer bucket, the least-privilege policies and one user per role:
#   twinlayer-pusher: writes blobs, journal records, heads and specs (and reads them back to resume); with
#     PUSHER_MAY_DELETE=1 it may also delete (policy-gc.json), so the primary garbage-collects the bucket
#     (gcIntervalMs); without, set gcIntervalMs=0 and run `twinlayer gc` while no pusher runs (README, Retention and GC);
#   twinlayer-puller: only reads and lists.
# Usage: bootstrap.sh ENDPOINT   (env: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, TWINLAYER_BUCKET, PUSHER_SECRET, PULLER_SECRET,
#        PUSHER_MAY_DELETE)
set -eu
endpoint=${1:?usage: bootstrap.sh ENDPOINT}
bucket=${TWINLAYER_BUCKET:-twinlayer}
here=$(dirname "$0")
mc alias set tl "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "tl/$bucket"
pusher_policy=pusher
[ "${PUSHER_MAY_DELETE:-0}" = 1 ] && pusher_policy=gc
for role in pusher puller gc; do
  sed "s/BUCKET/$bucket/g" "$here/policy-$role.json" > "/tmp/policy-$role.json"
  mc admin policy create tl "twinlayer-$role" "/tmp/policy-$role.json"
done
mc admin user add tl twinlayer-pusher "$PUSHER_SECRET"
mc admin user add tl twinlayer-puller "$PULLER_SECRET"
mc admin policy attach tl "twinlayer-$pusher_policy" --user twinlayer-pusher
mc admin policy attach tl twinlayer-puller --user twinlayer-puller
echo "bucket $bucket ready; users twinlayer-pusher (write$([ "$pusher_policy" = gc ] && echo ', delete')) and twinlayer-puller (read-only)"
