//! `sandpit serve`: the control API, auth, store, lifecycle reconciler and the
//! gateway that relays data-plane traffic to each sandbox's agent.
