#!/bin/sh
# keepalived notify script for twinlayer: forwards "TYPE NAME STATE PRIORITY" to the hook of `twinlayer pull`.
#
# Install as root-owned and not writable by others (keepalived's enable_script_security insists):
#   install -o root -g root -m 0755 notify.sh /usr/local/lib/twinlayer/notify.sh
#
# Environment (keepalived starts scripts with an almost empty environment, so the values below are also read
# from the twinlayer env file when they are not set):
#   TWINLAYER_HOOK_URL         default http://<TWINLAYER_HOOK_LISTEN>/v1/vrrp, else http://127.0.0.1:7450/v1/vrrp
#   TWINLAYER_HOOK_TOKEN       bearer token (the hook's hookToken)
#   TWINLAYER_HOOK_TOKEN_FILE  file whose first line is the token (used when TWINLAYER_HOOK_TOKEN is unset)
#   TWINLAYER_HOOK_TIMEOUT     seconds curl may take in all, default 20 (above the hook's bootTimeoutMs)
#   TWINLAYER_ENV_FILE         default /etc/twinlayer/twinlayer.env; only TWINLAYER_HOOK_* lines are read, never sourced
#
# Exit status: 0 when the hook answered 2xx; curl's exit code when it did not (22 for an HTTP error, 28 for a
# timeout, 7 when nothing listens); 2 for bad arguments, 3 for an unreadable token file, 4 when the hook answered
# that the promotion failed. keepalived logs non-zero exits; the hook's answer is logged either way.
set -u

tag=twinlayer-notify

log() { # level message
	if command -v logger >/dev/null 2>&1; then
		logger -t "$tag" -p "daemon.$1" -- "$2" 2>/dev/null || :
	fi
	printf '%s: %s\n' "$tag" "$2" >&2
}

if [ "$#" -lt 3 ]; then
	log err "usage: $0 TYPE NAME STATE [PRIORITY]"
	exit 2
fi
type=$1 name=$2 state=$3 priority=${4:-0}

env_file=${TWINLAYER_ENV_FILE:-/etc/twinlayer/twinlayer.env}

# The value of KEY in the env file (KEY=value, optional surrounding quotes); empty when absent.
env_value() {
	[ -r "$env_file" ] || return 0
	sed -n "s/^[[:space:]]*$1=//p" "$env_file" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\\(.*\\)'\$/\\1/"
}

url=${TWINLAYER_HOOK_URL:-}
if [ -z "$url" ]; then
	listen=$(env_value TWINLAYER_HOOK_LISTEN)
	url="http://${listen:-127.0.0.1:7450}/v1/vrrp"
fi
timeout=${TWINLAYER_HOOK_TIMEOUT:-20}

token=${TWINLAYER_HOOK_TOKEN:-}
token_file=${TWINLAYER_HOOK_TOKEN_FILE:-}
[ -n "$token_file" ] || token_file=$(env_value TWINLAYER_HOOK_TOKEN_FILE)
if [ -z "$token" ] && [ -n "$token_file" ]; then
	if ! token=$(head -n 1 -- "$token_file"); then
		log err "cannot read token file $token_file"
		exit 3
	fi
fi
[ -n "$token" ] || token=$(env_value TWINLAYER_HOOK_TOKEN)

# A JSON string of $1: backslash, quote and control characters escaped (tab and newline by name, others dropped).
json_string() {
	printf '%s' "$1" | tr -d '\000-\010\013-\037\177' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' \
		| awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

body=$(printf '{"type":"%s","name":"%s","state":"%s","priority":"%s"}' \
	"$(json_string "$type")" "$(json_string "$name")" "$(json_string "$state")" "$(json_string "$priority")")

# The token travels on stdin (-H @-), never on the command line where ps would show it.
if [ -n "$token" ]; then
	headers=$(printf 'Authorization: Bearer %s' "$token")
else
	headers=''
fi
answer=$(printf '%s\n' "$headers" | curl --silent --show-error --fail-with-body --max-time "$timeout" \
	-H @- -H 'Content-Type: application/json' --data-binary "$body" -- "$url" 2>&1)
rc=$?

if [ "$rc" -ne 0 ]; then
	log err "$type $name $state $priority: hook $url failed (curl exit $rc): $answer"
	exit "$rc"
fi
# 200 with a failed boot is still a failure keepalived should log; partial or timed-out boots are warnings.
case $answer in
*'"outcome":"failed"'*)
	log err "$type $name $state $priority: promotion failed: $answer"
	exit 4 ;;
*'"outcome":"partial"'* | *'"timedOut":true'*)
	log warning "$type $name $state $priority: $answer" ;;
*)
	log info "$type $name $state $priority: $answer" ;;
esac
exit 0
