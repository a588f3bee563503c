# Conduit: the `conduit` command uses the packaged gateway's configuration and state.
: "${CONDUIT_CONFIG:=/etc/conduit/conduit.toml}"
: "${CONDUIT_CONFIG_DIR:=/var/lib/conduit}"
export CONDUIT_CONFIG CONDUIT_CONFIG_DIR
