#!/bin/sh
# Fleetplane's helm provisioner entrypoint: deploys, upgrades, rolls back or uninstalls one Helm
# release, as PID 1 of the `helm` provisioner container (static busybox, helm and kubectl, the
# workspace's charts under /charts, nothing else). Only POSIX sh and busybox's tools.
#
# Contract (provisioners/helm/README.md has the long form):
#   FP_ACTION           deploy | upgrade | rollback | uninstall (or the first argument)
#   FP_RELEASE          the release; FP_NAMESPACE its namespace
#   FP_CHART            deploy, upgrade: a chart directory (/charts/fleet-telemetry), a chart name
#                       with FP_CHART_REPO, or an oci:// reference; FP_CHART_VERSION its version
#   FP_VALUES           deploy, upgrade: a values file (optional)
#   FP_REVISION         rollback: the revision to go back to
#   FP_TIMEOUT          helm's --timeout (default 10m)
#   FP_RECOVER_PENDING  1: a release stuck pending-* is first rolled back to its last deployed
#                       revision (uninstalled if it never was deployed), instead of refused
#   KUBECONFIG          the kubeconfig file (required)
#   FP_WORK_DIR         writable; helm's homes and scratch files (default /work)
#   HELM                the helm program (default: helm on PATH)
#
# Lines of its own on stdout, for the worker; everything else is helm's output as it is:
#   FLEETPLANE_STEP validate|status|recover|deploy|upgrade|rollback|uninstall
#   FLEETPLANE_RESULT {"action":…,"ok":…,"status":…,"revision":…,"error":…,"rollback_to":…}  (last, once)
#
# Exit status: 0 success; 1 a helm step failed; 2 the environment breaks the contract; 3 the
# chart cannot be loaded or rendered with these values; 4 the cluster's API server does not
# answer; 5 the release is stuck pending (the message names the fix); 130 / 143 interrupted by
# SIGINT / SIGTERM (after helm stopped).

log() {
	printf 'fleetplane: %s\n' "$*" >&2
}

PATH=${PATH:-/usr/local/bin:/usr/bin:/bin}
export PATH
HELM=${HELM:-helm}
scratch=

# --- The result -----------------------------------------------------------------------------
#
# Every field is a constant or was checked to be a plain word or number, so it needs no JSON
# escaping. `status` and `revision` are the release's newest revision as `helm history` shows
# it, read again after the action (also after a failed one: after --atomic rolled an upgrade
# back, that is the rollback's revision).

action_json=null
status=unknown
revision=null
rollback_to=null

# finish STATUS ERROR [MESSAGE]: prints the result line and exits; ERROR is empty on success.
finish() {
	code=$1
	error=$2
	shift 2
	[ $# -eq 0 ] || log "$*"
	if [ -n "$error" ]; then
		ok=false
		error_json="\"$error\""
	else
		ok=true
		error_json=null
	fi
	[ -z "$scratch" ] || rm -rf "$scratch"
	printf 'FLEETPLANE_RESULT {"action":%s,"ok":%s,"status":"%s","revision":%s,"error":%s,"rollback_to":%s}\n' \
		"$action_json" "$ok" "$status" "$revision" "$error_json" "$rollback_to"
	exit "$code"
}

contract() {
	finish 2 contract "$*"
}

# --- Signals --------------------------------------------------------------------------------
#
# helm runs in the background while this shell waits for it, so that a signal reaches the trap
# at once (a shell runs traps only between commands, and busybox sh as PID 1 ignores signals it
# does not trap). The trap sends helm one SIGTERM (a background job of a non-interactive shell
# ignores SIGINT): helm then cancels the operation, and with --atomic rolls the release back,
# before it exits.

child=
interrupted=

forward_interrupt() {
	log "SIG$interrupted received: stopping helm (pid $child) and waiting for it to exit"
	kill -TERM "$child" 2>/dev/null
}

on_signal() {
	if [ -n "$interrupted" ]; then
		log "SIG$1 again: still waiting for helm to stop"
		return
	fi
	interrupted=$1
	if [ -n "$child" ]; then
		forward_interrupt
	fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

exit_if_interrupted() {
	case $interrupted in
	INT) finish 130 interrupted "interrupted by SIGINT" ;;
	TERM) finish 143 interrupted "interrupted by SIGTERM" ;;
	esac
}

# run_helm STDOUT STDERR ARGS...: runs helm with ARGS, its output into the files STDOUT and
# STDERR, or into ours when both are empty; returns its exit status.
run_helm() {
	out=$1
	err=$2
	shift 2
	exit_if_interrupted
	if [ -n "$out" ]; then
		"$HELM" "$@" >"$out" 2>"$err" &
	else
		"$HELM" "$@" &
	fi
	child=$!
	# A signal between the fork and `child=$!` found no child to forward to.
	if [ -n "$interrupted" ]; then
		forward_interrupt
	fi
	# `wait` returns early when a trap runs: wait again until helm is really gone (until it is
	# reaped, `kill -0` succeeds, also for a zombie).
	wait "$child"
	helm_status=$?
	while kill -0 "$child" 2>/dev/null; do
		wait "$child"
		helm_status=$?
	done
	child=
	return "$helm_status"
}

# --- The release's history ------------------------------------------------------------------
#
# `helm history --output json` is an array of objects, one per revision, each with a numeric
# "revision" and a "status" string among other fields (chart, app_version, updated,
# description). summarize reads it with a tokenizer, not a pattern, so that a description
# quoting "status":"deployed" is a string like any other, and prints
# "LATEST STATUS DEPLOYED SUPERSEDED": the newest revision and its status, and the newest
# revisions whose status is deployed and superseded (0 when there is none).
summarize() {
	awk '
	BEGIN { latest = 0; latest_status = "unknown"; deployed = 0; superseded = 0; depth = 0 }
	{ text = text $0 "\n" }
	function scalar(v, quoted) {
		if (kind[depth] == "{" && want_key[depth]) {
			key[depth] = v
			want_key[depth] = 0
			return
		}
		if (depth == 2 && kind[2] == "{" && kind[1] == "[") {
			if (key[2] == "revision" && !quoted) rev = v
			if (key[2] == "status" && quoted) st = v
		}
	}
	function entry(    r) {
		if (rev !~ /^[0-9]+$/) return
		if (st !~ /^[a-z-]+$/) st = "unknown"
		r = rev + 0
		if (r > latest) { latest = r; latest_status = st }
		if (st == "deployed" && r > deployed) deployed = r
		if (st == "superseded" && r > superseded) superseded = r
	}
	END {
		n = length(text)
		for (i = 1; i <= n; i++) {
			c = substr(text, i, 1)
			if (c == "\"") {
				s = ""
				for (i++; i <= n; i++) {
					c = substr(text, i, 1)
					if (c == "\\") { s = s c substr(text, i + 1, 1); i++; continue }
					if (c == "\"") break
					s = s c
				}
				scalar(s, 1)
			} else if (c == "{" || c == "[") {
				depth++
				kind[depth] = c
				want_key[depth] = (c == "{")
				key[depth] = ""
				if (depth == 2) { rev = ""; st = "" }
			} else if (c == "}" || c == "]") {
				if (depth == 2 && c == "}") entry()
				depth--
			} else if (c == ",") {
				if (kind[depth] == "{") want_key[depth] = 1
			} else if (c != ":" && c !~ /[ \t\r\n]/) {
				j = i
				while (j <= n && substr(text, j, 1) !~ /[] \t\r\n,:}]/) j++
				scalar(substr(text, i, j - i), 0)
				i = j - 1
			}
		}
		print latest, latest_status, deployed, superseded
	}'
}

# read_history MODE: reads the release's history into latest, latest_status, deployed and
# superseded, and the result's status and revision. Returns 1 when there is no such release.
# When helm fails otherwise, MODE `strict` leaves (4 when the cluster is unreachable, else 1);
# MODE `lenient` (the result after the action) says so and returns 2, the status unknown.
read_history() {
	mode=$1
	run_helm "$scratch/history.json" "$scratch/history.err" \
		history "$FP_RELEASE" --namespace="$FP_NAMESPACE" --max=256 --output=json
	history_status=$?
	exit_if_interrupted
	if [ "$history_status" -eq 0 ]; then
		# shellcheck disable=SC2046 # four words
		set -- $(summarize <"$scratch/history.json")
		latest=$1 latest_status=$2 deployed=$3 superseded=$4
		if [ "$latest" -gt 0 ]; then
			status=$latest_status
			revision=$latest
		fi
		return 0
	fi
	if grep -q 'release: not found' "$scratch/history.err"; then
		return 1
	fi
	cat "$scratch/history.err" >&2
	if [ "$mode" = lenient ]; then
		log "could not read the release's history after the $action (exit status $history_status)"
		return 2
	fi
	if grep -q 'Kubernetes cluster unreachable' "$scratch/history.err"; then
		finish 4 unreachable "the cluster's API server did not answer: see helm's error above"
	fi
	finish 1 helm "helm history failed (exit status $history_status)"
}

# --- The contract ---------------------------------------------------------------------------

# matches VALUE ERE: whether all of VALUE matches the extended regular expression ERE (the
# value through the environment: awk -v would interpret its backslashes).
matches() {
	FP_MATCH_VALUE=$1 awk -v re="^($2)\$" 'BEGIN { exit !(ENVIRON["FP_MATCH_VALUE"] ~ re) }'
}

action=${1:-${FP_ACTION:-}}
case $action in
deploy | upgrade | rollback | uninstall) action_json="\"$action\"" ;;
"") contract "FP_ACTION is not set: deploy, upgrade, rollback or uninstall" ;;
*) contract "the action (FP_ACTION or the first argument) must be deploy, upgrade, rollback or uninstall" ;;
esac

# DNS-1123: what Kubernetes and helm accept for a release (at most 53 characters) and a namespace.
dns_label='[a-z0-9]([-a-z0-9]*[a-z0-9])?'
FP_RELEASE=${FP_RELEASE:-}
{ matches "$FP_RELEASE" "$dns_label" && [ ${#FP_RELEASE} -le 53 ]; } ||
	contract "FP_RELEASE must be a release name: at most 53 lower-case letters, digits and '-'"
FP_NAMESPACE=${FP_NAMESPACE:-}
{ matches "$FP_NAMESPACE" "$dns_label" && [ ${#FP_NAMESPACE} -le 63 ]; } ||
	contract "FP_NAMESPACE must be a namespace: at most 63 lower-case letters, digits and '-'"
FP_TIMEOUT=${FP_TIMEOUT:-10m}
matches "$FP_TIMEOUT" '([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+' ||
	contract "FP_TIMEOUT must be a duration helm reads, such as 10m or 1m30s"
case ${FP_RECOVER_PENDING:-} in
"" | 0) recover= ;;
1) recover=1 ;;
*) contract "FP_RECOVER_PENDING must be 1 (roll a stuck release back first), 0 or empty" ;;
esac

[ -n "${KUBECONFIG:-}" ] || contract "KUBECONFIG is not set: it names the kubeconfig file mounted for the run"
{ [ -f "$KUBECONFIG" ] && [ -r "$KUBECONFIG" ]; } ||
	contract "KUBECONFIG=$KUBECONFIG is not a file this user (uid $(id -u)) can read"
export KUBECONFIG

case $action in
deploy | upgrade)
	FP_CHART=${FP_CHART:-}
	[ -n "$FP_CHART" ] || contract "FP_CHART is not set: a chart directory, a chart name with FP_CHART_REPO, or oci://…"
	case $FP_CHART in -*) contract "FP_CHART must not start with '-'" ;; esac
	if [ -n "${FP_VALUES:-}" ]; then
		{ [ -f "$FP_VALUES" ] && [ -r "$FP_VALUES" ]; } ||
			contract "FP_VALUES=$FP_VALUES is not a file this user (uid $(id -u)) can read"
	fi
	;;
rollback)
	FP_REVISION=${FP_REVISION:-}
	matches "$FP_REVISION" '[1-9][0-9]*' || contract "FP_REVISION must be the revision to roll back to (1, 2, …)"
	;;
esac

FP_WORK_DIR=${FP_WORK_DIR:-/work}
{ mkdir -p "$FP_WORK_DIR/.fleetplane" 2>/dev/null && scratch=$(mktemp -d "$FP_WORK_DIR/.fleetplane/run.XXXXXX" 2>/dev/null); } ||
	contract "FP_WORK_DIR=$FP_WORK_DIR must be a writable directory (mount one there on a read-only root)"
: "${HELM_CACHE_HOME:=$FP_WORK_DIR/.helm/cache}" "${HELM_CONFIG_HOME:=$FP_WORK_DIR/.helm/config}" \
	"${HELM_DATA_HOME:=$FP_WORK_DIR/.helm/data}"
export HELM_CACHE_HOME HELM_CONFIG_HOME HELM_DATA_HOME

# --- The actions ----------------------------------------------------------------------------

# Before an upgrade: a release whose newest revision is pending-* is one a helm operation never
# finished (its process was killed, or lost the cluster), and helm refuses every upgrade until
# it is resolved ("another operation (install/upgrade/rollback) is in progress"). The fix is a
# rollback to the last deployed revision, or, for an install that never completed, an
# uninstall. Only the caller knows that no operation is still running, so it is done only when
# FP_RECOVER_PENDING=1 asks for it.
resolve_pending() {
	case $latest_status in
	pending-install | pending-upgrade | pending-rollback) ;;
	*) return 0 ;;
	esac
	if [ "$deployed" -gt 0 ]; then
		rollback_to=$deployed
	elif [ "$superseded" -gt 0 ]; then
		rollback_to=$superseded
	fi
	stuck="release $FP_RELEASE in namespace $FP_NAMESPACE is stuck in $latest_status at revision $latest: a helm operation on it never finished, and helm refuses to go on (\"another operation (install/upgrade/rollback) is in progress\")"
	if [ "$rollback_to" != null ]; then
		fix="helm rollback $FP_RELEASE $rollback_to --namespace $FP_NAMESPACE"
		what="roll back to the last deployed revision, $rollback_to"
	else
		fix="helm uninstall $FP_RELEASE --namespace $FP_NAMESPACE"
		what="uninstall it (no revision of it was ever deployed)"
	fi
	if [ -z "$recover" ]; then
		finish 5 pending "$stuck. The fix: $what ($fix), once no other helm operation on it is running; or run again with FP_RECOVER_PENDING=1 to have that done first"
	fi
	log "$stuck; FP_RECOVER_PENDING=1: $what first ($fix)"
	printf 'FLEETPLANE_STEP recover\n'
	if [ "$rollback_to" != null ]; then
		run_helm "" "" rollback "$FP_RELEASE" "$rollback_to" --namespace="$FP_NAMESPACE" --wait --timeout="$FP_TIMEOUT"
	else
		run_helm "" "" uninstall "$FP_RELEASE" --namespace="$FP_NAMESPACE" --wait --timeout="$FP_TIMEOUT"
	fi
	recover_status=$?
	exit_if_interrupted
	[ "$recover_status" -eq 0 ] || finish 1 helm "recovering the stuck release failed (exit status $recover_status)"
}

# The action's own helm step; on failure, reports the release as it then stands.
act() {
	printf 'FLEETPLANE_STEP %s\n' "$action"
	run_helm "" "" "$@"
	act_status=$?
	exit_if_interrupted
	if [ "$act_status" -ne 0 ]; then
		read_history lenient
		finish 1 helm "helm $1 failed (exit status $act_status)"
	fi
}

case $action in
deploy | upgrade)
	# Rendered offline first, so that a chart or values helm cannot use fail before the cluster
	# is involved. The manifests go nowhere: they may hold secrets from the values.
	printf 'FLEETPLANE_STEP validate\n'
	run_helm /dev/null "$scratch/template.err" template "$FP_RELEASE" "$FP_CHART" --namespace="$FP_NAMESPACE" \
		${FP_VALUES:+"--values=$FP_VALUES"} ${FP_CHART_VERSION:+"--version=$FP_CHART_VERSION"} \
		${FP_CHART_REPO:+"--repo=$FP_CHART_REPO"}
	template_status=$?
	exit_if_interrupted
	cat "$scratch/template.err" >&2
	[ "$template_status" -eq 0 ] ||
		finish 3 chart "the chart cannot be loaded or rendered with these values: see helm's error above"

	printf 'FLEETPLANE_STEP status\n'
	if read_history strict; then
		resolve_pending
	fi
	# No NOTES in the log: a chart's notes may print credentials from the values.
	act upgrade --install "$FP_RELEASE" "$FP_CHART" --namespace="$FP_NAMESPACE" --create-namespace --atomic --wait \
		--timeout="$FP_TIMEOUT" --hide-notes ${FP_VALUES:+"--values=$FP_VALUES"} \
		${FP_CHART_VERSION:+"--version=$FP_CHART_VERSION"} ${FP_CHART_REPO:+"--repo=$FP_CHART_REPO"}
	read_history lenient
	finish 0 ""
	;;
rollback)
	printf 'FLEETPLANE_STEP status\n'
	read_history strict ||
		finish 1 not_found "release $FP_RELEASE is not in namespace $FP_NAMESPACE: there is nothing to roll back"
	act rollback "$FP_RELEASE" "$FP_REVISION" --namespace="$FP_NAMESPACE" --wait --timeout="$FP_TIMEOUT"
	read_history lenient
	finish 0 ""
	;;
uninstall)
	printf 'FLEETPLANE_STEP status\n'
	if read_history strict; then
		act uninstall "$FP_RELEASE" --namespace="$FP_NAMESPACE" --wait --timeout="$FP_TIMEOUT" --ignore-not-found
		revision=null
	else
		log "release $FP_RELEASE is not in namespace $FP_NAMESPACE: nothing to uninstall"
	fi
	status=uninstalled
	finish 0 ""
	;;
esac
