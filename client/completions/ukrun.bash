# bash completion for ukrun (installed as share/bash-completion/completions/ukrun).
#
# The first word is a subcommand or an image file; after an image everything belongs to the guest, so only files
# are offered. Run ids come from `ukrun ps --json` only when a daemon answers (`ukrun ping` never starts one).

_ukrun_run_ids() {
	ukrun ping >/dev/null 2>&1 || return 0
	ukrun ps -n 50 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_ukrun() {
	local cur prev words cword
	if declare -F _init_completion >/dev/null; then
		_init_completion || return
	else
		cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
	fi
	local subcommands='ps runs show logs cancel images rm hosts version ping daemon tests'
	local run_opts='--platform --timeout --memory --vcpus --accel --machine --driver --host --require --priority --retries --success-code
		--uk-param --label --loader --socket --quiet --verbose --help --version --env --bind --no-bind --console
		--junit --cacert'
	local common='--json --socket --verbose --help'

	if ((cword == 1)); then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$run_opts" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$subcommands" -- "$cur"; compgen -f -- "$cur")
		fi
		return
	fi
	local sub=${words[1]}
	case $sub in
	ps | runs)
		case $prev in
		--state) mapfile -t COMPREPLY < <(compgen -W 'queued starting running done error timeout cancelled lost' -- "$cur"); return ;;
		--image) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
		-n | --label | --before | --socket) return ;;
		esac
		mapfile -t COMPREPLY < <(compgen -W "$common --all -n --state --label --image --before" -- "$cur")
		return ;;
	show | logs | cancel | tests)
		if [[ $cur == -* ]]; then
			local extra='-f --follow'
			[[ $sub == logs ]] && extra+=' --stdout --stderr'
			mapfile -t COMPREPLY < <(compgen -W "$common $extra" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_ukrun_run_ids)" -- "$cur")
		fi
		return ;;
	rm)
		mapfile -t COMPREPLY < <(compgen -W "$common" -- "$cur"; [[ $cur == -* ]] || compgen -f -- "$cur")
		return ;;
	daemon)
		mapfile -t COMPREPLY < <(compgen -W "start stop status $common" -- "$cur")
		return ;;
	hosts)
		case $prev in --capacity | --memory | --label | --image-quota) return ;; esac
		mapfile -t COMPREPLY < <(compgen -W "add rm $common --capacity --memory --label --image-quota --drain" -- "$cur")
		return ;;
	images | version | ping)
		mapfile -t COMPREPLY < <(compgen -W "$common" -- "$cur")
		return ;;
	esac
	# The run form: options until the image, then the guest's own arguments (files).
	local i
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		--) break ;;
		--platform | --timeout | --memory | --vcpus | --accel | --machine | --driver | --host | --require | --priority | --retries | \
			--success-code | \
			--uk-param | --label | --loader | --socket | --env | --bind | --console | --junit | --cacert) ((i++)) ;;
		-*) ;;
		*) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
		esac
	done
	case $prev in
	--platform) mapfile -t COMPREPLY < <(compgen -W 'qemu linuxu' -- "$cur"); return ;;
	--accel) mapfile -t COMPREPLY < <(compgen -W 'auto kvm tcg' -- "$cur"); return ;;
	--driver) mapfile -t COMPREPLY < <(compgen -W 'qemu linuxu libvirt xen' -- "$cur"); return ;;
	--loader | --socket | --junit | --cacert) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
	--bind) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
	--console) mapfile -t COMPREPLY < <(compgen -W 'raw app' -- "$cur"); return ;;
	--env) mapfile -t COMPREPLY < <(compgen -v -- "$cur"); return ;;
	--timeout | --memory | --vcpus | --machine | --host | --success-code | --uk-param | --label) return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$run_opts --" -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
}
complete -o filenames -o bashdefault -F _ukrun ukrun
