# Sourced by fleet-up.sh and fleet-down.sh (after ROOT and die): which fleet they act on.
#
# The default fleet: namespaces tf-h1.., bridge tfbr0 on 10.87.77.0/24, deploy/.fleet and
# inventory/local.yml. FLEET_NAME=x FLEET_NET=a.b.c names another fleet beside it, e.g. a large
# one for a benchmark while the default fleet is in use: namespaces tfx-h1.., bridge tfxbr0 on
# a.b.c.0/24, deploy/.fleet-x and inventory/local-x.yml. Neither script touches the other's.
FLEET_NAME=${FLEET_NAME:-}
if [[ -z $FLEET_NAME ]]; then
    PREFIX=tf
    NET=10.87.77          # /24; the bridge is .1, host i is .(10+i)
    FLEET=$ROOT/deploy/.fleet
    INVENTORY=$ROOT/inventory/local.yml
else
    # at most 6 characters: veth names (tfxv-h200) must fit the kernel's 15
    [[ $FLEET_NAME =~ ^[a-z][a-z0-9]{0,5}$ ]] \
        || die "FLEET_NAME must be 1 to 6 lowercase letters or digits, starting with a letter; got '$FLEET_NAME'"
    PREFIX=tf$FLEET_NAME
    NET=${FLEET_NET:-}
    FLEET=$ROOT/deploy/.fleet-$FLEET_NAME
    INVENTORY=$ROOT/inventory/local-$FLEET_NAME.yml
fi
BRIDGE=${PREFIX}br0
