#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# Packaging as a packager and a user meet it. `make install` into a temporary DESTDIR puts exactly
# the expected files in place (modes, links, soname); a program builds against the installed
# library with nothing but pkg-config and runs, shared and static; the .pc follows PREFIX and
# LIBDIR; every man page renders with `man -l` without a groff warning, has its sections and
# names every option the tool's --help lists; the bash completion completes commands, options,
# values and the pids of running VMs (one of ours, when /dev/kvm is there), also when
# bash-completion loads it by the tool's name; `make uninstall` removes all of it and nothing else.
#
# The Makefile copies this script to OUTPUT/tests/check_install; tests/run-tests runs it from the
# source tree like the Check suites, and it ends with the same RESULT line. Tags: unit (the VM
# pid case needs kvm).
set -u
export LC_ALL=C.UTF-8
unset MAKEFLAGS MAKELEVEL MFLAGS	# run from make check: no jobserver of the parent here

out=$(cd "$(dirname "$0")/.." && pwd)	# the build dir this copy was made for
root=$PWD
[ -f "$root/tools/completion/dirtytrace.bash" ] || root=$(cd "$out/.." && pwd)
out_rel=$(realpath --relative-to="$root" "$out")
version=$(sed -n 's/^VERSION := //p' "$root/Makefile")
soversion=$(sed -n 's/^SOVERSION := //p' "$root/Makefile")
tools="dirtytrace dirtytop dtcheckpoint dirtydemo dirtyplan"
tmp=$(mktemp -d /tmp/dt-install-XXXXXX)
demo_pid=

cleanup()
{
	[ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

pass=0 fail=0 skip=0
cur= case_failed= case_skipped=

# A failure line in Check's format (file:line:F:case: message), which tests/run-tests shows.
err()
{
	case_failed=1
	echo "check_install.sh:${BASH_LINENO[0]}:F:$cur: $*"
}

skip_case()
{
	case_skipped=1
	echo "SKIP $cur: $*"
}

run_case()
{
	cur=$1 case_failed= case_skipped=
	"$1"
	if [ -n "$case_failed" ]; then
		fail=$((fail + 1))
	elif [ -n "$case_skipped" ]; then
		skip=$((skip + 1))
	else
		pass=$((pass + 1))
		echo "ok $1"
	fi
}

# make in the source tree, on this build dir; the sanitizer build is installed as it was built.
dt_make()
{
	local san=
	readelf -d "$out/libdirtytrace.so.$version" 2>/dev/null | grep -q 'libasan' && san=SANITIZE=1
	make -s --no-print-directory -C "$root" OUTPUT="$out_rel" $san "$@"
}

# Files and symlinks under $1, relative to it, sorted.
tree()
{
	(cd "$1" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort)
}

# The long options a tool's --help lists (also --help, --usage, --version).
help_options()
{
	"$out/bin/$1" --help | grep -oE '^ +(-[^ ], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+' |
		sort -u
}

D=$tmp/destdir
P=/usr/local

expected_files()
{
	local t h
	{
		for t in $tools; do
			echo "$P/sbin/$t"
			echo "$P/share/man/man8/$t.8"
			echo "$P/share/bash-completion/completions/$t"
		done
		echo "$P/lib/libdirtytrace.a"
		echo "$P/lib/libdirtytrace.so"
		echo "$P/lib/libdirtytrace.so.$soversion"
		echo "$P/lib/libdirtytrace.so.$version"
		echo "$P/lib/pkgconfig/dirtytrace.pc"
		echo "$P/lib/systemd/system/dirtytrace-exporter.service"
		for h in "$root"/include/dirtytrace/*.h; do
			echo "$P/include/dirtytrace/${h##*/}"
		done
	} | sort
}

t_install_files()
{
	local got t

	if ! dt_make install DESTDIR="$D" >"$tmp/log" 2>&1; then
		err "make install DESTDIR=$D failed: $(tail -5 "$tmp/log")"
		return
	fi
	got=$(tree "$D")
	[ "$got" = "$(expected_files)" ] ||
		err "installed files differ from the expected list: $(diff <(expected_files) \
			<(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
	for t in $tools; do
		[ -x "$D$P/sbin/$t" ] && [ ! -L "$D$P/sbin/$t" ] || err "$P/sbin/$t: not an executable"
		[ "$("$D$P/sbin/$t" --version)" = "$t $version" ] ||
			err "installed $t --version: '$("$D$P/sbin/$t" --version)'"
	done
	[ "$(stat -c %a "$D$P/include/dirtytrace/dirtytrace.h")" = 644 ] || err "header mode"
	[ "$(stat -c %a "$D$P/lib/libdirtytrace.a")" = 644 ] || err "libdirtytrace.a mode"
	# the exporter's unit runs the installed dirtytrace
	grep -qx "ExecStart=$P/sbin/dirtytrace exporter" \
		"$D$P/lib/systemd/system/dirtytrace-exporter.service" ||
		err "dirtytrace-exporter.service: ExecStart is not $P/sbin/dirtytrace exporter"
	[ "$(readlink "$D$P/lib/libdirtytrace.so")" = "libdirtytrace.so.$soversion" ] ||
		err "libdirtytrace.so -> $(readlink "$D$P/lib/libdirtytrace.so")"
	[ "$(readlink "$D$P/lib/libdirtytrace.so.$soversion")" = "libdirtytrace.so.$version" ] ||
		err "libdirtytrace.so.$soversion -> $(readlink "$D$P/lib/libdirtytrace.so.$soversion")"
	readelf -d "$D$P/lib/libdirtytrace.so.$version" |
		grep -q "SONAME.*\[libdirtytrace.so.$soversion\]" ||
		err "soname of libdirtytrace.so.$version is not libdirtytrace.so.$soversion"
	# every public function is exported, nothing else of ours is
	nm -D --defined-only "$D$P/lib/libdirtytrace.so.$version" | awk '$2 == "T" {print $3}' |
		grep -v '^dt_' >"$tmp/extra"
	[ -s "$tmp/extra" ] && err "exported beyond the API: $(head -5 "$tmp/extra" | tr '\n' ' ')"
	for t in dirtytop dtcheckpoint dirtydemo dirtyplan; do
		[ "$(readlink "$D$P/share/bash-completion/completions/$t")" = dirtytrace ] ||
			err "completion for $t is not a link to dirtytrace's"
	done
	# again: install over an installed tree is fine and changes nothing
	dt_make install DESTDIR="$D" >"$tmp/log" 2>&1 || err "second make install failed"
	[ "$(tree "$D")" = "$(expected_files)" ] || err "a second install changed the file list"
}

# The .pc file of an install, read without a sysroot: the values a user's build gets.
pc_var()
{
	PKG_CONFIG_PATH=$1 PKG_CONFIG_SYSROOT_DIR= pkg-config --variable="$2" dirtytrace
}

t_pkgconfig()
{
	local pc=$D$P/lib/pkgconfig d2=$tmp/destdir-usr

	[ -f "$pc/dirtytrace.pc" ] || { err "no dirtytrace.pc installed"; return; }
	[ "$(pc_var "$pc" prefix)" = /usr/local ] || err "prefix=$(pc_var "$pc" prefix)"
	[ "$(pc_var "$pc" libdir)" = /usr/local/lib ] || err "libdir=$(pc_var "$pc" libdir)"
	[ "$(pc_var "$pc" includedir)" = /usr/local/include ] ||
		err "includedir=$(pc_var "$pc" includedir)"
	[ "$(PKG_CONFIG_PATH=$pc pkg-config --modversion dirtytrace)" = "$version" ] ||
		err "modversion $(PKG_CONFIG_PATH=$pc pkg-config --modversion dirtytrace)"
	# a distribution's layout: PREFIX=/usr, a multiarch LIBDIR
	if ! dt_make install DESTDIR="$d2" PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu \
	     >"$tmp/log" 2>&1; then
		err "make install PREFIX=/usr LIBDIR=... failed: $(tail -3 "$tmp/log")"
		return
	fi
	pc=$d2/usr/lib/x86_64-linux-gnu/pkgconfig
	[ "$(pc_var "$pc" prefix)" = /usr ] || err "PREFIX=/usr: prefix=$(pc_var "$pc" prefix)"
	[ "$(pc_var "$pc" libdir)" = /usr/lib/x86_64-linux-gnu ] ||
		err "LIBDIR=/usr/lib/x86_64-linux-gnu: libdir=$(pc_var "$pc" libdir)"
	[ "$(pc_var "$pc" includedir)" = /usr/include ] ||
		err "PREFIX=/usr: includedir=$(pc_var "$pc" includedir)"
	[ -x "$d2/usr/sbin/dirtytrace" ] && [ -f "$d2/usr/share/man/man8/dirtytop.8" ] &&
	[ -f "$d2/usr/share/bash-completion/completions/dirtytrace" ] &&
	[ -f "$d2/usr/include/dirtytrace/dirtytrace.h" ] &&
	[ -f "$d2/usr/lib/x86_64-linux-gnu/libdirtytrace.so.$version" ] &&
	grep -q "ExecStart=/usr/sbin/dirtytrace exporter" \
		"$d2/usr/lib/systemd/system/dirtytrace-exporter.service" ||
		err "PREFIX=/usr: files not where expected: $(tree "$d2" | tr '\n' ' ')"
	dt_make uninstall DESTDIR="$d2" PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu >/dev/null ||
		err "make uninstall PREFIX=/usr failed"
	[ -z "$(tree "$d2")" ] || err "PREFIX=/usr: uninstall left $(tree "$d2" | tr '\n' ' ')"
}

# The user's build: compiler flags from pkg-config only (the sysroot points it into DESTDIR).
pkgconf()
{
	PKG_CONFIG_PATH=$D$P/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D pkg-config "$@" dirtytrace
}

t_build_against_installed()
{
	local want="pages_per_s 200.0 raw_per_s 2000.0 epochs 2 source raw_tp/kvm_dirty_ring_push"
	local san= got cflags libs

	[ -d "$D$P/lib" ] || { err "nothing installed"; return; }
	cflags=$(pkgconf --cflags) && libs=$(pkgconf --libs) || { err "pkg-config failed"; return; }
	# a library built with ASan needs its runtime in the program too
	readelf -d "$D$P/lib/libdirtytrace.so.$version" | grep -q libasan &&
		san="-fsanitize=address,undefined"
	cp "$root/tests/install_probe.c" "$tmp/probe.c"	# outside the tree: no -Iinclude by chance
	# shellcheck disable=SC2086
	if ! cc -std=gnu11 -Wall -Wextra -Werror $san $cflags "$tmp/probe.c" -o "$tmp/probe" $libs \
	     2>"$tmp/cc.log"; then
		err "cc \$(pkg-config --cflags --libs dirtytrace) failed: $(head -5 "$tmp/cc.log")"
		return
	fi
	readelf -d "$tmp/probe" | grep -q "NEEDED.*\[libdirtytrace.so.$soversion\]" ||
		err "the program does not need libdirtytrace.so.$soversion (its soname)"
	got=$(LD_LIBRARY_PATH=$D$P/lib "$tmp/probe" 2>&1)
	[ "$got" = "$want" ] || err "shared: the program printed '$got', want '$want'"
	LD_LIBRARY_PATH=$D$P/lib ldd "$tmp/probe" | grep -q "libdirtytrace.so.$soversion => $D$P/lib/" ||
		err "the program did not load the installed library"
	# static: the .a plus what `pkg-config --static --libs` says it needs
	libs=$(pkgconf --static --libs | sed 's/-ldirtytrace//')
	# shellcheck disable=SC2086
	if ! cc -std=gnu11 $san $cflags "$tmp/probe.c" "$D$P/lib/libdirtytrace.a" $libs \
	     -o "$tmp/probe-static" 2>"$tmp/cc.log"; then
		err "static link with pkg-config --static --libs failed: $(head -5 "$tmp/cc.log")"
		return
	fi
	readelf -d "$tmp/probe-static" | grep -q libdirtytrace && err "static program needs the .so"
	got=$("$tmp/probe-static" 2>&1)
	[ "$got" = "$want" ] || err "static: the program printed '$got', want '$want'"
}

t_man_pages()
{
	local t page text warn s o opts

	for t in $tools; do
		page=$D$P/share/man/man8/$t.8
		[ -f "$page" ] || { err "$t: no man page installed"; continue; }
		warn=$(MANWIDTH=80 man --warnings=w -l "$page" 2>&1 >/dev/null)
		[ -z "$warn" ] || err "$t.8: groff warnings: $warn"
		text=$(MANWIDTH=80 man -l "$page" 2>/dev/null | col -bx)
		for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
			grep -qx "$s" <<<"$text" || err "$t.8: no $s section"
		done
		grep -q "^ *$t - ." <<<"$text" || err "$t.8: NAME is not '$t - ...'"
		grep -q "^dirtytrace $version .*$t(8)\$" <<<"$(sed 's/  */ /g' <<<"$text")" ||
			err "$t.8: the footer does not say 'dirtytrace $version'"
		# every option --help lists has its entry under OPTIONS ("-x, --name=ARG" at the margin)
		opts=$(sed -n '/^OPTIONS$/,/^[A-Z]/p' <<<"$text" | grep -E '^ {7}-')
		for o in $(help_options "$t"); do
			grep -qE -- "(^| )$o(=|,|\$)" <<<"$opts" || err "$t.8: OPTIONS has no entry for $o"
		done
		# man finds it by name in the installed tree
		[ "$(MANPATH=$D$P/share/man man -w "$t" 2>/dev/null)" = "$page" ] ||
			err "man -w $t does not find the installed page"
	done
	text=$(MANWIDTH=80 man -l "$D$P/share/man/man8/dirtytop.8" 2>/dev/null | col -bx)
	for s in "INTERACTIVE COMMANDS" "JSON OUTPUT"; do
		grep -qx "$s" <<<"$text" || err "dirtytop.8: no $s section"
	done
	for s in dirty_pages_per_s ring_full_exits_per_s wss_pages share; do
		grep -qw "$s" <<<"$text" || err "dirtytop.8: JSON key $s not documented"
	done
	text=$(MANWIDTH=80 man -l "$D$P/share/man/man8/dirtytrace.8" 2>/dev/null | col -bx)
	grep -qx "JSON OUTPUT" <<<"$text" || err "dirtytrace.8: no JSON OUTPUT section"
	for s in vms gfns record report stream exporter; do
		grep -q "^ *dirtytrace .*$s" <<<"$(sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' <<<"$text")" ||
			err "dirtytrace.8: SYNOPSIS lacks $s"
		grep -qE "^ {7}$s( |\$)" <<<"$text" || err "dirtytrace.8: command $s not described"
	done
}

# Completes a command line given as its words (COMP_WORDBREAKS splits "--pid=1" into --pid = 1;
# the last word is the one completed) with the installed script, in a fresh bash; prints the
# candidates sorted, one line, space-separated.
complete_words()
{
	bash -c '
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		fn=$(complete -p "$1" | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
		[ -n "$fn" ] || { echo "no completion for $1"; exit 1; }
		"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ \$//"
	' complete "$D$P/share/bash-completion/completions/dirtytrace" "$@"
}

# expect_completion "WANT" WORD...: the candidates are exactly WANT
expect_completion()
{
	local want=$1 got
	shift
	got=$(complete_words "$@")
	[ "$got" = "$want" ] || err "completing '$*': got '$got', want '$want'"
}

# expect_offers "WANT..." WORD...: the candidates include every word of WANT
expect_offers()
{
	local want=$1 got w
	shift
	got=" $(complete_words "$@") "
	for w in $want; do
		[[ $got == *" $w "* ]] || err "completing '$*': '$w' not offered (got '$got')"
	done
}

t_completion()
{
	local o cmd

	[ -f "$D$P/share/bash-completion/completions/dirtytrace" ] ||
		{ err "no completion installed"; return; }
	expect_completion "exporter gfns record report stream vms" dirtytrace ""
	expect_completion "record report" dirtytrace r
	expect_completion "stream" dirtytrace -v st
	expect_completion "--duration" dirtytrace gfns --du
	expect_completion "bin json" dirtytrace stream --format ""
	expect_completion "bin" dirtytrace stream -F b
	expect_completion "fentry kprobe ring" dirtytrace -v gfns -p 1 -s ""
	expect_completion "json" dirtytrace stream --format = j
	expect_completion "--format=json" dirtytrace stream --format=j	# '=' not a word break
	expect_completion "" dirtytrace gfns -d ""	# a number: nothing to offer
	expect_completion "--json" dirtytrace vms --j
	expect_completion "hotcold random seq" dirtydemo --pattern ""
	expect_completion "--epochs" dtcheckpoint --ep
	expect_completion "--qmp" dirtytop --q
	expect_completion "--downtime" dirtyplan --do
	expect_completion "100ms 1s" dirtyplan --downtime 1
	# values that are files: report's FILE, record -o, dirtytop --qmp
	mkdir -p "$tmp/files/traces" && : >"$tmp/files/vm1.dtt" && : >"$tmp/files/vm2.dtt"
	expect_completion "$tmp/files/vm1.dtt $tmp/files/vm2.dtt" dirtytrace report "$tmp/files/vm"
	expect_completion "$tmp/files/traces" dirtytrace record -p 1 -o "$tmp/files/tr"
	expect_completion "$tmp/files/traces" dirtytop --qmp "$tmp/files/t"
	expect_completion "$tmp/files/vm1.dtt $tmp/files/vm2.dtt" dirtyplan "$tmp/files/vm"
	# an option after the command's argument is still an option of that command
	expect_completion "--json" dirtytrace report "$tmp/files/vm1.dtt" --js
	# every long option --help lists is offered somewhere
	for o in $(help_options dirtytrace); do
		for cmd in "" vms gfns record report stream exporter; do
			[[ " $(complete_words dirtytrace $cmd --) " == *" $o "* ]] && continue 2
		done
		err "completion never offers dirtytrace $o"
	done
	for cmd in dirtytop dtcheckpoint dirtydemo dirtyplan; do
		expect_offers "$(help_options $cmd)" $cmd --
	done
}

# The pids of running VMs: one of ours (dirtydemo), never a process without a VM.
t_completion_vm_pids()
{
	local i

	if [ "$(id -u)" != 0 ] || [ ! -w /dev/kvm ]; then
		skip_case "needs root and /dev/kvm to run a VM whose pid is completed"
		return
	fi
	"$out/bin/dirtydemo" -q -d 60 -P 256 &
	demo_pid=$!
	for i in $(seq 50); do	# until it holds its VM
		find "/proc/$demo_pid/fd" -lname 'anon_inode:kvm-vm' 2>/dev/null | grep -q . && break
		sleep 0.1
	done
	kill -0 "$demo_pid" 2>/dev/null || { err "dirtydemo did not start"; demo_pid=; return; }
	expect_offers "$demo_pid" dirtytrace gfns -p ""
	expect_offers "$demo_pid" dirtytrace stream --pid = ""
	expect_offers "--pid=$demo_pid" dirtytrace record --pid="${demo_pid:0:1}"
	expect_offers "$demo_pid" dtcheckpoint -p "${demo_pid:0:1}"
	expect_offers "1,$demo_pid" dirtytop -p 1,
	[[ " $(complete_words dirtytop -p "$demo_pid,") " == *" $demo_pid,$demo_pid "* ]] &&
		err "dirtytop -p offers a pid already in the list"
	[[ " $(complete_words dirtytrace gfns -p "") " == *" $$ "* ]] &&
		err "offers pid $$, which holds no VM"
	kill "$demo_pid" && wait "$demo_pid" 2>/dev/null
	demo_pid=
}

# bash-completion finds the script by each tool's name (the links) in an installed tree.
t_completion_loader()
{
	local bc=/usr/share/bash-completion/bash_completion t got

	[ -f "$bc" ] || { skip_case "bash-completion is not installed ($bc)"; return; }
	for t in $tools; do
		got=$(XDG_DATA_DIRS=$D$P/share HOME=$tmp bash -c '
			source "$1" >/dev/null 2>&1
			__load_completion "$2" && complete -p "$2"' loader "$bc" "$t" 2>&1)
		[[ $got == "complete -F _$t $t" ]] ||
			err "bash-completion did not load the completion of $t: '$got'"
	done
}

t_uninstall()
{
	local left

	[ -d "$D$P" ] || { err "nothing installed"; return; }
	# files of others in the same directories stay
	mkdir -p "$D$P/share/man/man8" && : >"$D$P/share/man/man8/other.8" && : >"$D$P/lib/libother.so"
	if ! dt_make uninstall DESTDIR="$D" >"$tmp/log" 2>&1; then
		err "make uninstall failed: $(tail -3 "$tmp/log")"
		return
	fi
	left=$(tree "$D" | tr '\n' ' ')
	[ "$left" = "$P/lib/libother.so $P/share/man/man8/other.8 " ] ||
		err "after uninstall: '$left' (only the two files of others should be left)"
	[ -e "$D$P/include/dirtytrace" ] && err "uninstall left $P/include/dirtytrace/"
	dt_make uninstall DESTDIR="$D" >"$tmp/log" 2>&1 || err "a second uninstall failed"
}

for c in t_install_files t_pkgconfig t_build_against_installed t_man_pages t_completion \
	 t_completion_vm_pids t_completion_loader t_uninstall; do
	run_case $c
done
echo "RESULT check_install passed $pass failed $fail skipped $skip"
[ "$fail" = 0 ]
