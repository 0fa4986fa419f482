#!/bin/sh
# keepalived notify script for twinlayer: records the VRRP state and forwards "TYPE NAME STATE PRIORITY" to the
# hook of the local `twinlayer agent`. Configured for every state on every host (keepalived.conf.example).
#
# Install as root-owned and not writable by others (keepalived's enable_script_security insists):
#   install -o root -g root -m 0755 notify.sh /usr/local/lib/twinlayer/notify.sh
#
# keepalived runs notify scripts asynchronously: two calls can overlap and finish out of order. So each call
# takes the time it started (nanoseconds since the epoch) first thing and sends it as "at"; the agent acts on the
# newest. Before calling the hook it also records "STATE AT" in the state file, under a lock and only when AT is
# newer than what the file holds: the file always holds the newest state, even when calls race and even when
# the agent is down (the agent reads it at its start).
#
# Environment (keepalived starts scripts with an almost empty environment, so the values below are also read
# from the twinlayer env file when they are not set):
#   TWINLAYER_HOOK_URL         default http://<TWINLAYER_HOOK_LISTEN>/v1/vrrp, else http://127.0.0.1:7450/v1/vrrp
#   TWINLAYER_HOOK_TOKEN       bearer token (the hook's hookToken)
#   TWINLAYER_HOOK_TOKEN_FILE  file whose first line is the token (used when TWINLAYER_HOOK_TOKEN is unset)
#   TWINLAYER_HOOK_TIMEOUT     seconds curl may take in all, default 20 (above the hook's bootTimeoutMs)
#   TWINLAYER_VRRP_STATE_FILE  default /run/twinlayer/vrrp-state; its directory is created (0755) if missing.
#                              One line "STATE AT", e.g. "MASTER 1764620000123456789"; the lock is STATE_FILE.lock
#   TWINLAYER_ENV_FILE         default /etc/twinlayer/twinlayer.env; only TWINLAYER_* lines named above are read,
#                              never sourced
#   TWINLAYER_NOTIFY_AT        for tests only: use these digits as "at" instead of the clock
#
# Exit status: 0 when the hook answered 2xx and the state was recorded; curl's exit code when the hook did not
# answer 2xx (22 for an HTTP error, 28 for a timeout, 7 when nothing listens); 2 for bad arguments (or a
# TWINLAYER_NOTIFY_AT that is not 1-20 digits), 3 for an unreadable token file, 4 when the hook answered that
# acting on the state failed (promotion or demotion), 5 when the hook answered but the state file could not be
# written. The state is recorded whatever the hook does; keepalived logs non-zero exits; the hook's answer is
# logged for every state.
set -u

# First: the order of overlapping calls is the order in which keepalived started them.
at=$(date +%s%N)

tag=twinlayer-notify

log() { # level message
	if command -v logger >/dev/null 2>&1; then
		logger -t "$tag" -p "daemon.$1" -- "$2" 2>/dev/null || :
	fi
	printf '%s: %s\n' "$tag" "$2" >&2
}

if [ -n "${TWINLAYER_NOTIFY_AT:-}" ]; then
	at=$TWINLAYER_NOTIFY_AT
	case $at in
	*[!0-9]*)
		log err "TWINLAYER_NOTIFY_AT must be 1-20 digits, got: $at"
		exit 2 ;;
	esac
	if [ "${#at}" -gt 20 ]; then
		log err "TWINLAYER_NOTIFY_AT must be 1-20 digits, got: $at"
		exit 2
	fi
fi
case $at in
'' | *[!0-9]*)
	# A date without %N (not GNU coreutils): whole seconds still order calls that are a second apart.
	at=$(date +%s)000000000 ;;
esac

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

# True when decimal digit string $1 is a larger number than $2 (compared as text: too long for shell arithmetic).
newer() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		sub(/^0+/, "", a); sub(/^0+/, "", b)
		if (length(a) != length(b)) exit !(length(a) > length(b))
		exit !((a "") > (b ""))
	}'
}

state_file=${TWINLAYER_VRRP_STATE_FILE:-}
[ -n "$state_file" ] || state_file=$(env_value TWINLAYER_VRRP_STATE_FILE)
[ -n "$state_file" ] || state_file=/run/twinlayer/vrrp-state
state_dir=$(dirname -- "$state_file")

# Writes "STATE AT" to the state file unless it already holds a newer AT. Under flock on STATE_FILE.lock, so two
# racing calls cannot both read the old line and the older one win; temp file + fsync + rename, so a reader (or a
# crash) never sees half a line.
record_state() {
	if [ ! -d "$state_dir" ] && ! mkdir -p -m 0755 -- "$state_dir"; then
		log err "$type $name $state $priority: cannot create $state_dir"
		return 1
	fi
	(
		flock -w 10 9 || { log err "$type $name $state $priority: no lock on $state_file.lock within 10 s"; exit 1; }
		held=$(head -n 1 -- "$state_file" 2>/dev/null) || held=''
		held_at=${held##* }
		case $held_at in
		'' | *[!0-9]*) ;; # absent or unreadable: ours is newer
		*)
			if ! newer "$at" "$held_at"; then
				log info "$type $name $state $priority: $state_file holds a newer state ($held), left as is"
				exit 0
			fi ;;
		esac
		tmp=$(mktemp -- "$state_file.XXXXXX") || exit 1
		if printf '%s %s\n' "$state" "$at" >"$tmp" && chmod 0644 -- "$tmp" && sync -- "$tmp" && mv -f -- "$tmp" "$state_file"; then
			sync -- "$state_dir" 2>/dev/null || :
			exit 0
		fi
		rm -f -- "$tmp"
		log err "$type $name $state $priority: cannot write $state_file"
		exit 1
	) 9>>"$state_file.lock"
}

recorded=0
case $state in
MASTER | BACKUP | FAULT | STOP | DELETED)
	record_state || recorded=5 ;;
*)
	# Not a state keepalived sends: never recorded (the agent would act on it); the hook refuses it by name.
	log warning "$type $name $state $priority: unknown state, not recorded in $state_file" ;;
esac

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

body=$(printf '{"type":"%s","name":"%s","state":"%s","priority":"%s","at":"%s"}' \
	"$(json_string "$type")" "$(json_string "$name")" "$(json_string "$state")" "$(json_string "$priority")" "$at")

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
	log err "$type $name $state $priority at $at: hook $url failed (curl exit $rc): $answer"
	exit "$rc"
fi
# 200 with a failed promotion or demotion is still a failure keepalived should log; partial or timed-out ones
# are warnings.
case $state in
MASTER) acting=promotion ;;
BACKUP | FAULT) acting=demotion ;;
*) acting="acting on $state" ;;
esac
case $answer in
*'"outcome":"failed"'*)
	log err "$type $name $state $priority at $at: $acting failed: $answer"
	exit 4 ;;
*'"outcome":"partial"'* | *'"timedOut":true'*)
	log warning "$type $name $state $priority at $at: $answer" ;;
*)
	log info "$type $name $state $priority at $at: $answer" ;;
esac
exit "$recorded"
