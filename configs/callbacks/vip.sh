#!/bin/sh
# A virtual IP that follows the primary: a pgha (or Patroni) callback for on_start, on_stop,
# on_restart and on_role_change.
#
#   postgresql:
#     callbacks:
#       on_start: /etc/pgha/vip.sh 10.0.0.100/24 eth0
#       on_stop: /etc/pgha/vip.sh 10.0.0.100/24 eth0
#       on_restart: /etc/pgha/vip.sh 10.0.0.100/24 eth0
#       on_role_change: /etc/pgha/vip.sh 10.0.0.100/24 eth0
#
# The agent appends <action> <role> <scope>. The address goes up on a primary and down
# everywhere else; going up, it announces itself with gratuitous ARP (where arping exists) so
# that clients on the segment switch to the new primary at once. It needs CAP_NET_ADMIN: run the
# agent as root, or give this script the capability through sudo.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 ADDRESS/PREFIX DEVICE ACTION ROLE [SCOPE]" >&2; exit 2; }
vip=$1 dev=$2 action=$3 role=$4
addr=${vip%/*}

has_vip() { ip -o addr show dev "$dev" | grep -q " $addr/"; }

up() {
    has_vip || ip addr add "$vip" dev "$dev"
    if command -v arping >/dev/null 2>&1; then
        # -U: unsolicited (gratuitous) ARP; neighbours update the address's entry to our MAC
        arping -q -U -c 3 -w 2 -I "$dev" "$addr" >/dev/null 2>&1 &
    fi
    echo "vip $vip up on $dev ($action $role)"
}

down() {
    if has_vip; then ip addr del "$vip" dev "$dev"; fi
    echo "vip $vip down on $dev ($action $role)"
}

case "$action:$role" in
    on_stop:*) down ;;
    on_start:primary|on_start:master|on_restart:primary|on_restart:master|on_role_change:primary|on_role_change:master) up ;;
    on_start:*|on_restart:*|on_role_change:*) down ;;
    *) echo "vip: nothing to do for $action $role" ;;
esac
