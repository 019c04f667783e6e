#!/bin/sh
# Validate one nginx site file (upstream/server blocks) the way nginx would
# load it: `nginx -t` needs a complete configuration, so wrap the file in a
# minimal one. The live configuration cannot be used: it includes the old copy
# of the site, not the candidate. Used as the `validate` of the web role.
set -eu

site=${1:?usage: nginx-check-site SITE_FILE}
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

cat > "$workdir/nginx.conf" <<CONF
pid $workdir/nginx.pid;
error_log stderr;
events {}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    include $site;
}
CONF

nginx -t -q -c "$workdir/nginx.conf"
