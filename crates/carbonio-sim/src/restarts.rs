//! Fleet-wide record of simulated service restarts, so tests and benchmarks can check a
//! rollout's staggering (how many nodes were down at once, overall and per cluster).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How a restart was requested on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartMethod {
    /// `zmcontrol restart` (legacy).
    Zmcontrol,
    /// `systemctl restart <unit>` (systemd).
    Systemctl,
}

/// One restart: the node was down from `started` to `ended`.
#[derive(Debug, Clone)]
pub struct RestartRecord {
    pub node: String,
    pub cluster: String,
    pub method: RestartMethod,
    pub started: Instant,
    pub ended: Instant,
    /// False when the node was told to fail (MTA left stopped).
    pub ok: bool,
}

impl RestartRecord {
    /// How long the node was down.
    pub fn duration(&self) -> Duration {
        self.ended - self.started
    }
}

/// Shared, append-only restart log.
#[derive(Debug, Default)]
pub struct RestartLog {
    records: Mutex<Vec<RestartRecord>>,
}

impl RestartLog {
    /// Appends a finished restart.
    pub fn push(&self, r: RestartRecord) {
        self.records.lock().expect("restart log poisoned").push(r);
    }

    /// A copy of every finished restart, in completion order.
    pub fn snapshot(&self) -> Vec<RestartRecord> {
        self.records.lock().expect("restart log poisoned").clone()
    }
}

/// The largest number of restarts in progress at the same instant.
pub fn max_concurrent<'a>(records: impl IntoIterator<Item = &'a RestartRecord>) -> usize {
    // Sweep over start (+1) and end (-1) events; ends sort before starts at the same
    // instant so back-to-back restarts do not count as overlapping.
    let mut events: Vec<(Instant, i32)> = Vec::new();
    for r in records {
        events.push((r.started, 1));
        events.push((r.ended, -1));
    }
    events.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

/// [`max_concurrent`] for each cluster.
pub fn max_concurrent_per_cluster(records: &[RestartRecord]) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, Vec<&RestartRecord>> = BTreeMap::new();
    for r in records {
        by.entry(r.cluster.clone()).or_default().push(r);
    }
    by.into_iter()
        .map(|(c, rs)| (c, max_concurrent(rs)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cluster: &str, base: Instant, from: u64, to: u64) -> RestartRecord {
        RestartRecord {
            node: format!("{cluster}-{from}"),
            cluster: cluster.into(),
            method: RestartMethod::Zmcontrol,
            started: base + Duration::from_millis(from),
            ended: base + Duration::from_millis(to),
            ok: true,
        }
    }

    #[test]
    fn overlap_counting() {
        let b = Instant::now();
        let rs = vec![
            rec("a", b, 0, 10),
            rec("a", b, 10, 20),
            rec("b", b, 5, 15),
            rec("b", b, 6, 7),
        ];
        assert_eq!(max_concurrent(&rs), 3);
        let per = max_concurrent_per_cluster(&rs);
        assert_eq!(per["a"], 1);
        assert_eq!(per["b"], 2);
    }
}
