#!/bin/sh
# Fleetplane provisioner entrypoint: one script for every target, run as PID 1 of a provisioner
# container (the local image holds nothing but static busybox and terraform) or directly on a
# host by the process executor (/bin/sh with coreutils). Only POSIX sh and the tools that
# busybox has too (awk, cp, mkdir, rm).
#
# Contract (provisioners/README.md has the long form):
#   FP_PHASE      plan | apply
#   FP_DESTROY    1: plan a destroy (and, at apply, print no outputs)
#   FP_MODULE_DIR Terraform module, read-only (default /module); copied to $FP_WORK_DIR/module
#   FP_WORK_DIR   working directory (default /work); the plan file is $FP_WORK_DIR/plan.tfplan
#   FP_BACKEND    http | s3 | gcs | azurerm | local, with FP_BACKEND_* (see init below)
#   TF_VAR_*, TF_HTTP_*, and the providers' credentials (AWS_*, ARM_*, GOOGLE_*) as they are.
#
# Lines of its own on stdout, for the worker; everything else is Terraform's output as it is:
#   FLEETPLANE_STEP init|plan|apply
#   FLEETPLANE_PLAN {"add":N,"change":N,"destroy":N}      (plan phase, once)
#   FLEETPLANE_OUTPUTS {...}                               (apply phase, not for destroys, once)
#
# Exit status: 0 success; 1 a Terraform step failed; 2 the environment breaks the contract;
# 130 / 143 interrupted by SIGINT / SIGTERM (after Terraform stopped and released its lock).

log() {
	printf 'fleetplane: %s\n' "$*" >&2
}

die() {
	status=$1
	shift
	log "$*"
	exit "$status"
}

PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
export PATH

# --- Signals --------------------------------------------------------------------------------
#
# Terraform must get exactly one SIGINT: on the first it stops gracefully, persists the state
# and releases its lock; on a second it exits at once ("Two interrupts received"). So it runs
# in a process group of its own (setsid), out of reach of signals sent to this script's group
# (a terminal's Ctrl-C, an executor signalling the group), in the background while this shell
# waits for it, so that a signal reaches the trap at once (a shell runs traps only between
# commands, and busybox sh as PID 1 ignores signals it does not trap). The trap forwards one
# SIGINT.
#
# Its own group also keeps Terraform out of reach of a SIGKILL sent to this script's group.
# So that it never outlives the script, a watchdog in a session of its own reads Terraform's
# group id from a FIFO whose writer is this script alone: when the script dies, however it
# dies, the watchdog reads end-of-file and kills that group.

child=
interrupted=
forwarded=
isolated=

forward_interrupt() {
	forwarded=1
	log "SIG$interrupted received: stopping terraform (pid $child) and waiting for it to exit"
	kill -INT "$child" 2>/dev/null
}

on_signal() {
	if [ -n "$interrupted" ]; then
		log "SIG$1 again: still waiting for terraform to stop"
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
	INT) die 130 "interrupted by SIGINT" ;;
	TERM) die 143 "interrupted by SIGTERM" ;;
	esac
}

# Starts the watchdog (see above); without setsid, Terraform shares this script's group.
start_watchdog() {
	command -v setsid >/dev/null 2>&1 || return 0
	mkfifo "$1" || return 0
	# shellcheck disable=SC2016 # expanded by the watchdog's shell
	setsid sh -c 'group=; while read -r next; do group=$next; done; [ -z "$group" ] || kill -KILL -"$group"' \
		<"$1" >/dev/null 2>&1 &
	# Read-write, so that opening never blocks, even if the watchdog did not start.
	exec 9<>"$1"
	isolated=1
}

# Runs terraform with the arguments given; returns its exit status.
tf() {
	exit_if_interrupted
	forwarded=
	if [ -n "$isolated" ]; then
		setsid terraform "$@" 9>&- &
		child=$!
		printf '%s\n' "$child" >&9
	else
		terraform "$@" &
		child=$!
	fi
	# A signal between the fork and `child=$!` found no child to forward to.
	if [ -n "$interrupted" ] && [ -z "$forwarded" ]; then
		forward_interrupt
	fi
	# `wait` returns early when a trap runs: wait again until terraform is really gone (until
	# it is reaped, `kill -0` succeeds, also for a zombie).
	wait "$child"
	tf_status=$?
	while kill -0 "$child" 2>/dev/null; do
		wait "$child"
		tf_status=$?
	done
	child=
	if [ -n "$isolated" ]; then
		printf '\n' >&9
	fi
	return "$tf_status"
}

# Runs a terraform step; leaves the script when it fails or was interrupted.
step() {
	tf "$@"
	step_status=$?
	exit_if_interrupted
	[ "$step_status" -eq 0 ] || die 1 "terraform $1 failed (exit status $step_status)"
}

# --- JSON -----------------------------------------------------------------------------------
#
# A small streaming JSON reader in awk: records are split at double quotes, so text alternates
# between outside and inside strings (a quote preceded by an odd number of backslashes belongs
# to the string). It follows the path of every token, so that only the right places count,
# whatever resource attributes or descriptions contain.
#
#   json plan FILE     (terraform show -json of a plan) prints "ADD CHANGE DESTROY DESTROY_PLAN":
#                      create/update/delete in resource_changes[].change.actions (a replace is
#                      one create and one delete); DESTROY_PLAN is 1 when every resource and
#                      output change is a delete, which only a destroy plan produces.
#   json outputs FILE  (terraform output -json) prints it on one line, with the value of every
#                      sensitive output replaced by null.
json() {
	awk -v mode="$1" '
	function push(c) {
		d++
		ctype[d] = c
		key[d] = ""
		expect_key[d] = (c == "{")
	}
	function emit(s) {
		if (mode != "outputs") return
		if (capturing) value = value s
		else if (in_output) entry = entry s
		else out = out s
	}
	function end_literal() {
		if (literal == "") return
		emit(literal)
		if (mode == "outputs" && d == 2 && key[2] == "sensitive" && literal == "true") sensitive = 1
		literal = ""
	}
	function string_value(s) {
		if (mode != "plan") return
		if (d == 5 && key[1] == "resource_changes" && key[3] == "change" && key[4] == "actions") {
			if (s == "create") add++
			else if (s == "update") change++
			else if (s == "delete") destroy++
			if (s != "delete" && s != "no-op" && s != "read" && s != "forget") other++
		} else if (d == 4 && key[1] == "output_changes" && key[3] == "actions") {
			if (s == "delete") output_deletes++
			else if (s != "no-op") other++
		}
	}
	function outside(text,    i, n, c) {
		n = length(text)
		for (i = 1; i <= n; i++) {
			c = substr(text, i, 1)
			if (c == "{" || c == "[") {
				end_literal()
				if (mode == "outputs" && d == 1 && c == "{") {
					in_output = 1
					entry = ""
					sensitive = 0
				}
				emit(c)
				push(c)
			} else if (c == "}" || c == "]") {
				end_literal()
				if (capturing && d == 2) capturing = 0
				emit(c)
				d--
				if (in_output && d == 1) {
					i_mark = index(entry, "\001")
					if (i_mark) entry = substr(entry, 1, i_mark - 1) (sensitive ? "null" : value) substr(entry, i_mark + 1)
					out = out entry
					in_output = 0
				}
			} else if (c == ":") {
				end_literal()
				expect_key[d] = 0
				emit(c)
				if (mode == "outputs" && d == 2 && key[2] == "value") {
					emit("\001")
					capturing = 1
					value = ""
				}
			} else if (c == ",") {
				end_literal()
				if (capturing && d == 2) capturing = 0
				if (ctype[d] == "{") expect_key[d] = 1
				emit(c)
			} else if (c == " " || c == "\t" || c == "\n" || c == "\r") {
				end_literal()
			} else {
				literal = literal c
			}
		}
	}
	BEGIN { RS = "\""; d = 0; string_next = 0; pending = "" }
	{
		if (!string_next) {
			outside($0)
			string_next = 1
			next
		}
		s = pending $0
		if (match($0, /\\+$/) && RLENGTH % 2 == 1) {
			pending = s "\""
			next
		}
		pending = ""
		string_next = 0
		emit("\"" s "\"")
		if (ctype[d] == "{" && expect_key[d]) {
			key[d] = s
			expect_key[d] = 0
		} else {
			string_value(s)
		}
	}
	END {
		end_literal()
		if (d != 0 || pending != "") {
			print "json: unbalanced JSON in " FILENAME > "/dev/stderr"
			exit 1
		}
		if (mode == "plan") {
			print add + 0, change + 0, destroy + 0, (other == 0 && destroy + output_deletes > 0) ? 1 : 0
		} else {
			print out
		}
	}
	' "$2"
}

# --- Contract -------------------------------------------------------------------------------

phase=${FP_PHASE:-}
destroy=${FP_DESTROY:-}
module_source=${FP_MODULE_DIR:-/module}
work=${FP_WORK_DIR:-/work}
backend=${FP_BACKEND:-}

case $phase in
plan | apply) ;;
*) die 2 "FP_PHASE must be plan or apply (got \"$phase\")" ;;
esac
case $destroy in
'' | 0 | 1) ;;
*) die 2 "FP_DESTROY must be 1, 0 or empty (got \"$destroy\")" ;;
esac
[ -d "$module_source" ] || die 2 "FP_MODULE_DIR $module_source is not a directory"
mkdir -p "$work" || die 2 "cannot create FP_WORK_DIR $work"
work=$(cd "$work" && pwd) || die 2 "cannot enter FP_WORK_DIR $work"
module_source=$(cd "$module_source" && pwd) || die 2 "cannot enter FP_MODULE_DIR $module_source"
plan_file=$work/plan.tfplan
module=$work/module

require() {
	for name in "$@"; do
		eval "value=\${$name:-}"
		[ -n "$value" ] || die 2 "FP_BACKEND=$backend needs $name"
	done
}

# Checked before anything runs; `init` turns the settings into -backend-config arguments.
case $backend in
http) require TF_HTTP_ADDRESS ;;
s3) require FP_BACKEND_BUCKET FP_BACKEND_KEY FP_BACKEND_REGION ;;
gcs) require FP_BACKEND_BUCKET FP_BACKEND_PREFIX ;;
azurerm) require FP_BACKEND_STORAGE_ACCOUNT FP_BACKEND_CONTAINER FP_BACKEND_KEY ;;
local) ;;
'') die 2 "FP_BACKEND must be set: http, s3, gcs, azurerm or local" ;;
*) die 2 "FP_BACKEND must be http, s3, gcs, azurerm or local (got \"$backend\")" ;;
esac
if [ "$phase" = apply ] && ! [ -f "$plan_file" ]; then
	die 2 "no saved plan at $plan_file: the apply phase applies the plan phase's plan"
fi

export TF_IN_AUTOMATION=1 TF_INPUT=0
# No call home to checkpoint-api.hashicorp.com: runs may reach nothing but their backend.
export CHECKPOINT_DISABLE=1

# The module is copied into the work directory (its source is read-only) without any
# .terraform from a developer's checkout. Files that may hold secrets (the plan's JSON, the
# outputs) go to a private scratch directory that is removed on exit.
scratch=$work/.fleetplane
rm -rf "$scratch" "$module"
if ! mkdir -p "$module" || ! mkdir -m 700 "$scratch"; then
	die 2 "cannot write into FP_WORK_DIR $work"
fi
trap 'rm -rf "$scratch"' EXIT
cp -R "$module_source/." "$module/" || die 2 "cannot copy $module_source to $module"
rm -rf "$module/.terraform"
cd "$module" || die 2 "cannot enter $module"

# A FROM-scratch image holds only /bin/busybox. This shell finds busybox's applets without
# links (Debian builds it as a standalone shell), but the programs it starts do not, and
# Terraform's local-exec runs `sh`: the applets get links in /bin or, when the root file system
# is read-only or not ours (`docker run --read-only`, `--user`), in the scratch directory,
# first on PATH.
if [ ! -e /bin/sh ] && [ -x /bin/busybox ]; then
	/bin/busybox --install -s /bin 2>/dev/null
	if ! [ -e /bin/sh ]; then
		mkdir "$scratch/bin" && /bin/busybox --install -s "$scratch/bin"
		PATH=$scratch/bin:$PATH
	fi
fi
start_watchdog "$scratch/terraform-group"
# A FROM-scratch image has no /tmp, and Docker gives it HOME=/.
if [ -z "${TMPDIR:-}" ] && ! [ -d /tmp ]; then
	TMPDIR=$scratch/tmp
	mkdir "$TMPDIR" && export TMPDIR
fi
if [ -z "${HOME:-}" ] || [ "$HOME" = / ]; then
	HOME=$work
	export HOME
fi

# Writes the backend block into the copied module, then runs `terraform init` with the
# backend's settings. The modules declare no backend; being an override file, this one would
# keep the choice with Fleetplane even if one ever did.
init() {
	case $backend in
	http)
		# Terraform reads TF_HTTP_ADDRESS, TF_HTTP_LOCK_ADDRESS, TF_HTTP_UNLOCK_ADDRESS,
		# TF_HTTP_USERNAME and TF_HTTP_PASSWORD itself: no secret on a command line, and the
		# per-run token may differ between the plan run and the apply run.
		set --
		;;
	s3)
		# S3's own conditional writes lock the state (Terraform 1.11+): no DynamoDB table.
		set -- "-backend-config=bucket=$FP_BACKEND_BUCKET" "-backend-config=key=$FP_BACKEND_KEY" \
			"-backend-config=region=$FP_BACKEND_REGION" "-backend-config=encrypt=true" \
			"-backend-config=use_lockfile=true"
		;;
	gcs)
		set -- "-backend-config=bucket=$FP_BACKEND_BUCKET" "-backend-config=prefix=$FP_BACKEND_PREFIX"
		;;
	azurerm)
		set -- "-backend-config=storage_account_name=$FP_BACKEND_STORAGE_ACCOUNT" \
			"-backend-config=container_name=$FP_BACKEND_CONTAINER" "-backend-config=key=$FP_BACKEND_KEY"
		# With a resource group the backend fetches the account key through ARM; without one it
		# signs in to the blob service with Entra ID (Storage Blob Data Contributor needed).
		if [ -n "${FP_BACKEND_RESOURCE_GROUP:-}" ]; then
			set -- "$@" "-backend-config=resource_group_name=$FP_BACKEND_RESOURCE_GROUP"
		else
			set -- "$@" "-backend-config=use_azuread_auth=true"
		fi
		;;
	local)
		set -- "-backend-config=path=$work/terraform.tfstate"
		;;
	esac
	printf 'terraform {\n  backend "%s" {}\n}\n' "$backend" >fleetplane_backend_override.tf ||
		die 2 "cannot write the backend configuration into $module"
	printf '%s\n' "FLEETPLANE_STEP init"
	step init -input=false -no-color "$@"
}

# Sets plan_add, plan_change, plan_destroy and plan_is_destroy from the saved plan (see `json`).
count_changes() {
	step show -json -no-color "$plan_file" >"$scratch/plan.json"
	counts=$(json plan "$scratch/plan.json") || die 1 "could not read the plan's JSON"
	rm -f "$scratch/plan.json"
	# shellcheck disable=SC2086 # four numbers, split on purpose
	set -- $counts
	[ "$#" -eq 4 ] || die 1 "could not count the plan's changes (got \"$counts\")"
	plan_add=$1 plan_change=$2 plan_destroy=$3 plan_is_destroy=$4
}

case $phase in
plan)
	init
	printf '%s\n' "FLEETPLANE_STEP plan"
	rm -f "$plan_file"
	if [ "$destroy" = 1 ]; then
		step plan -input=false -no-color -destroy "-out=$plan_file"
	else
		step plan -input=false -no-color "-out=$plan_file"
	fi
	count_changes
	printf 'FLEETPLANE_PLAN {"add":%d,"change":%d,"destroy":%d}\n' "$plan_add" "$plan_change" "$plan_destroy"
	;;
apply)
	init
	# A destroy is recognised from the plan too, should FP_DESTROY not come with the apply.
	if [ "$destroy" != 1 ]; then
		count_changes
		[ "$plan_is_destroy" = 1 ] && destroy=1
	fi
	printf '%s\n' "FLEETPLANE_STEP apply"
	step apply -input=false -no-color "$plan_file"
	if [ "$destroy" != 1 ]; then
		step output -json -no-color >"$scratch/outputs.json"
		outputs=$(json outputs "$scratch/outputs.json") || die 1 "could not read the outputs' JSON"
		printf 'FLEETPLANE_OUTPUTS %s\n' "$outputs"
	fi
	;;
esac
