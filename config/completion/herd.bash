# bash completion for herd(1): commands, their flags, flag values, and service names asked
# of the daemon itself (`herd status`, with the --socket / --state-dir given on the line).
# Installed as <prefix>/share/bash-completion/completions/herd; or: source this file.
# tests/e2e/test_docs.py drives it with COMP_WORDS against src/cmd.c's command table.

_herd_commands="daemon config status show add replace rm start stop restart logs events reload info clusters hosts run jobs wait kill prune shutdown help"

# Service names, from the daemon on the socket this command line would use.
_herd_services() {
    local -a g=()
    [[ -n $_herd_socket ]] && g+=(--socket "$_herd_socket")
    [[ -n $_herd_state ]] && g+=(--state-dir "$_herd_state")
    "$_herd_bin" "${g[@]}" status 2>/dev/null | while read -r name _; do
        [[ $name != NAME ]] && printf '%s\n' "$name"
    done
}

_herd_flags() {
    case $1 in
    daemon) echo "--config --state-dir --socket --log-level --log-format --read-group --leave-running --priority --cgroups --liveness-file --http --http-token-file --finished-jobs" ;;
    status) echo "--json --state --tag --watch" ;;
    start | restart) echo "--wait --timeout" ;;
    stop) echo "--wait --timeout --delay" ;;
    logs) echo "-f --follow -n --lines --job --attempt" ;;
    run) echo "--name --queue --priority --retries --timeout --tag --wait" ;;
    jobs) echo "--state --limit --offset --after --json" ;;
    wait) echo "--quiet" ;;
    kill) echo "--failed" ;;
    prune) echo "--older-than --state" ;;
    events) echo "-f --follow --since --service --json" ;;
    hosts) echo "--json" ;;
    shutdown) echo "--leave-running" ;;
    esac
}

_herd() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local _herd_bin=${COMP_WORDS[0]} _herd_socket="" _herd_state="" cmd="" i=1 nargs=0
    COMPREPLY=()
    # Global options come before the command.
    while ((i < COMP_CWORD)); do
        case ${COMP_WORDS[i]} in
        --socket) _herd_socket=${COMP_WORDS[i + 1]}; ((i += 2)) ;;
        --state-dir) _herd_state=${COMP_WORDS[i + 1]}; ((i += 2)) ;;
        -*) ((i++)) ;;
        *) cmd=${COMP_WORDS[i]} && break ;;
        esac
    done
    # Words after the command that are not flags (nor a flag's value): its arguments so far.
    local j
    for ((j = i + 1; j < COMP_CWORD; j++)); do
        case ${COMP_WORDS[j]} in
        --state | --tag | --timeout | --delay | -n | --lines | --since | --service | --config | --state-dir | --socket | \
            --log-level | --log-format | --read-group | --priority | --cgroups | --liveness-file | --http | --http-token-file | \
            --attempt | --name | --queue | --retries | --limit | --offset | --after | --older-than | --finished-jobs) ((j++)) ;;
        -*) ;;
        *) ((nargs++)) ;;
        esac
    done
    if [[ -z $cmd ]]; then
        case $prev in
        --socket) COMPREPLY=($(compgen -f -- "$cur")) && return ;;
        --state-dir) COMPREPLY=($(compgen -d -- "$cur")) && return ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--socket --state-dir --version --help" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$_herd_commands" -- "$cur"))
        fi
        return
    fi
    # A flag's value.
    case $prev in
    --config | --state-dir) COMPREPLY=($(compgen -d -- "$cur")) && return ;;
    --socket | --liveness-file | --http-token-file) COMPREPLY=($(compgen -f -- "$cur")) && return ;;
    --log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")) && return ;;
    --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")) && return ;;
    --priority)
        if [[ $cmd == run ]]; then COMPREPLY=($(compgen -W "1 2 3 4 5" -- "$cur")); else COMPREPLY=($(compgen -W "realtime normal" -- "$cur")); fi
        return
        ;;
    --cgroups) COMPREPLY=($(compgen -W "auto off" -- "$cur")) && return ;;
    --read-group) COMPREPLY=($(compgen -g -- "$cur")) && return ;;
    --state)
        if [[ $cmd == jobs || $cmd == prune ]]; then
            COMPREPLY=($(compgen -W "PENDING RUNNING BACKOFF STOPPING COMPLETED FAILED TIMEOUT STOPPED" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "SUBMITTED PENDING STARTING HEALTHY UNHEALTHY STOPPING STOPPED FAILED TIMEOUT COMPLETED BACKOFF UNKNOWN" -- "$cur"))
        fi
        return
        ;;
    --service) COMPREPLY=($(compgen -W "$(_herd_services)" -- "$cur")) && return ;;
    --tag | --timeout | --delay | -n | --lines | --since | --http | --attempt | --name | --queue | --retries | --limit | \
        --offset | --older-than | --finished-jobs) return ;;
    --after) COMPREPLY=($(compgen -W "$(_herd_services)" -- "$cur")) && return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_herd_flags "$cmd")" -- "$cur"))
        return
    fi
    case $cmd in
    status | show | rm | start | stop | restart | jobs | wait | kill | prune) ;;
    run) return ;;
    logs) ((nargs == 0)) || return ;;
    replace)
        if ((nargs == 1)); then
            COMPREPLY=($(compgen -f -- "$cur"))
            return
        fi
        ((nargs == 0)) || return
        ;;
    add) COMPREPLY=($(compgen -f -- "$cur")) && return ;;
    config)
        if ((nargs == 0)); then COMPREPLY=($(compgen -W "check" -- "$cur")); else COMPREPLY=($(compgen -d -- "$cur")); fi
        return
        ;;
    help)
        ((nargs == 0)) && COMPREPLY=($(compgen -W "$_herd_commands" -- "$cur"))
        return
        ;;
    *) return ;;
    esac
    [[ $cmd == show ]] && ((nargs > 0)) && return
    COMPREPLY=($(compgen -W "$(_herd_services)" -- "$cur"))
}

complete -F _herd herd
