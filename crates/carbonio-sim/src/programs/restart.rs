//! A simulated service restart: every enabled service goes down for the node's restart
//! time (SMTP answers 421, status shows Stopped), then comes back with the effective
//! Postfix config re-rendered from LDAP — unless the node was told to fail, in which
//! case the MTA stays stopped. Each restart is recorded fleet-wide. A node loaded by
//! `sim-exec` waits through its [`crate::node::RestartHook`] instead of sleeping.
//! A test can hold a restart down past its time ([`Node::hold_restarts`]).

use std::sync::Arc;

use tokio::time::Instant;

use crate::node::Node;
use crate::restarts::{RestartMethod, RestartRecord};

/// Stops everything now; returns when the node is back. `true` = the MTA started.
pub async fn restart_node(node: &Arc<Node>, method: RestartMethod) -> bool {
    let services = node.services();
    let started = Instant::now();
    let time = {
        let mut st = node.state();
        st.stopped.extend(services.iter().cloned());
        st.restarting_until = Some(started + st.restart_time);
        st.restart_time
    };
    // A real Postfix (the real-process fleet) goes down now, if it runs (after a failed
    // start it does not, and `postfix stop` would log a fatal error); the emulated one
    // reads as down from `stopped` and `restarting_until`.
    let running = node.state().master_started.is_some();
    if let (Some(real), true) = (node.mta_hook(), running) {
        real.stopped();
        // Saved with the "down" state: another process (zmconfigd's poll) must not
        // reload a master that is not there.
        node.state().master_started = None;
    }
    match node.restart_hook() {
        // A real process (`sim-exec`): the hook saves the "down" state, waits without
        // holding the state lock, and reloads what other processes changed meanwhile.
        Some(hook) => hook.pause(node, method, time).await,
        None => {
            tokio::time::sleep(time).await;
            node.wait_restart_released().await;
        }
    }
    let fail = {
        let mut st = node.state();
        let fail = std::mem::take(&mut st.fail_next_restart);
        st.restarting_until = None;
        st.stopped.clear();
        if fail {
            st.stopped.insert("mta".into());
        }
        fail
    };
    node.render_postfix();
    if fail {
        let mut st = node.state();
        st.master_started = None;
        st.loaded_master = None;
    } else {
        node.start_master();
    }
    node.restarts.push(RestartRecord {
        node: node.name.clone(),
        cluster: node.cluster.name.clone(),
        method,
        started,
        ended: Instant::now(),
        ok: !fail,
    });
    !fail
}
