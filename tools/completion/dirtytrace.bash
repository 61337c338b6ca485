# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# bash completion for dirtytrace, dirtytop, dtcheckpoint, dirtydemo and dirtyplan: commands,
# options, option values, and the pids of running VMs where an option takes a pid. Installed as
# .../bash-completion/completions/dirtytrace, with the other names linked to it, so
# bash-completion loads it on first use; `source` it by hand works too (no helper of
# bash-completion is needed).

# The pids of processes holding a KVM VM (an anon_inode:kvm-vm file descriptor), as dirtytrace
# finds them, without BPF: one find(1) over /proc. Another user's /proc/PID/fd is unreadable
# unless we are root (completion runs as the user, also for `sudo dirtytrace`), so for them the
# processes whose name is a known VMM's are added.
_dirtytrace_vm_pids()
{
	local c n
	{
		find /proc/[0-9]*/fd -maxdepth 1 -lname 'anon_inode:kvm-vm' 2>/dev/null |
			cut -d/ -f3
		if [[ $EUID != 0 ]]; then
			for c in /proc/[0-9]*/comm; do
				read -r n 2>/dev/null <"$c" || continue
				case $n in
				qemu-system-*|qemu-kvm|kvm|firecracker|cloud-hyperviso*|crosvm|lkvm|\
				dirtydemo)
					c=${c#/proc/}
					echo "${c%/comm}"
					;;
				esac
			done
		fi
	} | sort -un
}

# COMPREPLY from the words in $1 that start with $2, each prefixed with $3.
_dirtytrace_reply()
{
	local w IFS=$' \t\n'
	local -
	set -f	# "-?" is a word here, not a glob
	COMPREPLY=()
	for w in $1; do
		[[ $w == "$2"* ]] && COMPREPLY+=("$3$w")
	done
}

# Files and directories starting with $1.
_dirtytrace_files()
{
	compopt -o filenames 2>/dev/null
	mapfile -t COMPREPLY < <(compgen -f -- "$1")
}

# Splits the word being completed into the option it is the value of ($opt, empty when it is no
# option's value) and the value so far ($cur). Handles "-p 12", "--pid 12" and "--pid=12",
# whether or not COMP_WORDBREAKS splits at '='. $1: the options that take a value.
_dirtytrace_split()
{
	local takes=" $1 " prev=
	local w=${COMP_WORDS[COMP_CWORD]}

	(( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	opt= cur=$w eqprefix=
	if [[ $w == --*=* ]]; then
		opt=${w%%=*} cur=${w#*=} eqprefix="$opt="
	elif [[ $w == = ]] && (( COMP_CWORD > 1 )); then
		opt=$prev cur=
	elif [[ $prev == = ]] && (( COMP_CWORD > 2 )); then
		opt=${COMP_WORDS[COMP_CWORD - 2]}
	elif [[ $takes == *" $prev "* ]]; then
		opt=$prev
	fi
}

# The first word after the command that is neither an option nor an option's value.
# $1: the options that take a value.
_dirtytrace_subcommand()
{
	local takes=" $1 " i w
	for (( i = 1; i < COMP_CWORD; i++ )); do
		w=${COMP_WORDS[i]}
		if [[ $w == = ]]; then
			(( i++ ))	# "--opt = value": skip the value
		elif [[ $w == -* ]]; then
			[[ $takes == *" $w "* && ${COMP_WORDS[i + 1]} != = ]] && (( i++ ))
		else
			echo "$w"
			return
		fi
	done
}

_dirtytrace()
{
	local opt cur eqprefix cmd
	local takes="-p --pid -d --duration -i --interval -s --source -r --ringbuf -o --output
		-E --epoch-ms -T --trigger -F --format -S --socket -B --client-buffer
		-L --listen -C --client-timeout"
	local commands="vms gfns record report stream exporter"
	local global="-v --verbose -? --help --usage -V --version"
	local opts

	_dirtytrace_split "$takes"
	case $opt in
	-p|--pid)
		_dirtytrace_reply "$(_dirtytrace_vm_pids)" "$cur" "$eqprefix"
		return
		;;
	-s|--source)
		_dirtytrace_reply "fentry kprobe ring" "$cur" "$eqprefix"
		return
		;;
	-F|--format)
		_dirtytrace_reply "json bin" "$cur" "$eqprefix"
		return
		;;
	-L|--listen)
		_dirtytrace_reply "127.0.0.1:19555 :19555 [::1]:19555" "$cur" "$eqprefix"
		return
		;;
	-o|--output|-S|--socket)
		[[ -z $eqprefix ]] && _dirtytrace_files "$cur"
		return
		;;
	-*)
		COMPREPLY=()	# a number
		return
		;;
	esac

	cmd=$(_dirtytrace_subcommand "$takes")
	case $cmd in
	vms)
		opts="-j --json" ;;
	gfns)
		opts="-p --pid -d --duration -i --interval -j --json -s --source -r --ringbuf" ;;
	record)
		opts="-p --pid -o --output -d --duration -i --interval -s --source -r --ringbuf
			-e --events" ;;
	report)
		if [[ $cur != -* ]]; then
			_dirtytrace_files "$cur"
			return
		fi
		opts="-j --json" ;;
	stream)
		opts="-p --pid -E --epoch-ms -i --interval -T --trigger -F --format -d --duration
			-S --socket -B --client-buffer -s --source -r --ringbuf -e --events" ;;
	exporter)
		opts="-L --listen -C --client-timeout -i --interval -s --source -r --ringbuf" ;;
	"")
		if [[ $cur != -* ]]; then
			_dirtytrace_reply "$commands" "$cur" ""
			return
		fi
		;;
	esac
	_dirtytrace_reply "$opts $global" "$cur" ""
}

_dirtytop()
{
	local opt cur eqprefix pids done_pids p
	local takes="-d --delay -n --count -p --pid -Q --qmp"

	_dirtytrace_split "$takes"
	case $opt in
	-p|--pid)
		# a comma-separated list: complete its last element, leave out those already given
		done_pids=
		if [[ $cur == *,* ]]; then
			done_pids=${cur%,*},
			cur=${cur##*,}
		fi
		pids=
		for p in $(_dirtytrace_vm_pids); do
			[[ ,$done_pids == *",$p,"* ]] || pids+=" $p"
		done
		_dirtytrace_reply "$pids" "$cur" "$eqprefix$done_pids"
		return
		;;
	-Q|--qmp)
		[[ -z $eqprefix ]] && _dirtytrace_files "$cur"
		return
		;;
	-*)
		COMPREPLY=()
		return
		;;
	esac
	_dirtytrace_reply "-b --batch -e --expand -d --delay -n --count -p --pid -j --json
		-Q --qmp -v --verbose -? --help --usage -V --version" "$cur" ""
}

_dtcheckpoint()
{
	local opt cur eqprefix
	local takes="-p --pid -i --interval -n --epochs -o --output -t --trigger -j --threads"

	_dirtytrace_split "$takes"
	case $opt in
	-p|--pid)
		_dirtytrace_reply "$(_dirtytrace_vm_pids)" "$cur" "$eqprefix"
		return
		;;
	-o|--output)
		[[ -z $eqprefix ]] && _dirtytrace_files "$cur"
		return
		;;
	-*)
		COMPREPLY=()
		return
		;;
	esac
	_dirtytrace_reply "-p --pid -i --interval -n --epochs -o --output -t --trigger -s --stop
		-j --threads -v --verbose -? --help --usage -V --version" "$cur" ""
}

_dirtydemo()
{
	local opt cur eqprefix
	local takes="-c --vcpus -P --pages -t --pattern -r --ring -f --phase -d --duration"

	_dirtytrace_split "$takes"
	case $opt in
	-t|--pattern)
		_dirtytrace_reply "hotcold random seq" "$cur" "$eqprefix"
		return
		;;
	-*)
		COMPREPLY=()
		return
		;;
	esac
	_dirtytrace_reply "-c --vcpus -P --pages -t --pattern -r --ring -B --bitmap -f --phase
		-d --duration -q --quiet -? --help --usage -V --version" "$cur" ""
}

_dirtyplan()
{
	local opt cur eqprefix
	local takes="-p --pid -d --duration -i --interval -Q --qmp -b --bandwidth -l --link
		-D --downtime -m --max-iterations -T --timeout -P --page-size -r --ram -o --plot"

	_dirtytrace_split "$takes"
	case $opt in
	-p|--pid)
		_dirtytrace_reply "$(_dirtytrace_vm_pids)" "$cur" "$eqprefix"
		return
		;;
	-Q|--qmp|-o|--plot)
		[[ -z $eqprefix ]] && _dirtytrace_files "$cur"
		return
		;;
	-b|--bandwidth|-l|--link)
		_dirtytrace_reply "128M 1G 1gbit 10gbit 25gbit 100gbit" "$cur" "$eqprefix"
		return
		;;
	-D|--downtime)
		_dirtytrace_reply "100ms 300ms 500ms 1s" "$cur" "$eqprefix"
		return
		;;
	-*)
		COMPREPLY=()
		return
		;;
	esac
	if [[ $cur != -* ]]; then
		_dirtytrace_files "$cur"	# the recording
		return
	fi
	_dirtytrace_reply "-p --pid -d --duration -i --interval -Q --qmp -b --bandwidth -l --link
		-D --downtime -m --max-iterations -T --timeout -P --page-size -r --ram -s --scan-ram
		-o --plot -j --json -v --verbose -? --help --usage -V --version" "$cur" ""
}

complete -F _dirtytrace dirtytrace
complete -F _dirtytop dirtytop
complete -F _dtcheckpoint dtcheckpoint
complete -F _dirtydemo dirtydemo
complete -F _dirtyplan dirtyplan
