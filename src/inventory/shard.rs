//! `--shard K/N`: a deterministic slice of the selected hosts, so that N machines (or the
//! N pods of a Kubernetes Indexed Job) can sweep one inventory between them.
//!
//! Assignment is by rendezvous (highest-random-weight) hashing on the host's CLUSTER:
//! every shard `k` gets the score `SHA-256(cluster ‖ k)` and the cluster goes to the
//! highest score. Hence all nodes of one cluster land in the same shard (global changes
//! are made once per cluster, on one of its nodes), and a cluster's shard depends only on
//! its own name and N: reordering the inventory, or adding and removing other clusters,
//! moves nothing else. SHA-256 rather than std's hasher because the N pods may run
//! different builds, and std makes no promise that its hash is stable across releases.
//! Pure: no I/O.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::Host;

/// `K/N`: the K-th (1-based) of N slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// 1..=count
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not of the form K/N (e.g. 2/8)"))?;
        let number = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{x}` in `{s}` is not a whole number"))
        };
        let (index, count) = (number(k)?, number(n)?);
        if count == 0 || index == 0 || index > count {
            return Err(format!("shard `{s}`: K and N must satisfy 1 <= K <= N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The rendezvous score of `cluster` for shard `k` (1-based).
fn score(cluster: &str, k: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(cluster.as_bytes());
    // A separator that cannot occur inside a UTF-8 string keeps `ab`+`1` apart from `a`+`b1`.
    h.update([0xff]);
    h.update(k.to_be_bytes());
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The 1-based shard (out of `count`) that `cluster` belongs to.
pub fn shard_of(cluster: &str, count: u32) -> u32 {
    // Ties (astronomically unlikely) go to the lower index, deterministically.
    (1..=count.max(1))
        .max_by_key(|&k| (score(cluster, k), std::cmp::Reverse(k)))
        .unwrap_or(1)
}

/// The hosts of `hosts` that belong to `shard`, in their original order.
pub fn slice<'a, H>(hosts: impl IntoIterator<Item = H>, shard: Shard) -> Vec<H>
where
    H: std::borrow::Borrow<Host> + 'a,
{
    let mut memo: HashMap<String, bool> = HashMap::new();
    hosts
        .into_iter()
        .filter(|h| {
            let cluster = &h.borrow().cluster;
            if let Some(&mine) = memo.get(cluster) {
                return mine;
            }
            let mine = shard_of(cluster, shard.count) == shard.index;
            memo.insert(cluster.clone(), mine);
            mine
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(name: &str, cluster: &str) -> Host {
        Host {
            cluster: cluster.to_owned(),
            ..Host::for_test(name)
        }
    }

    fn names(hosts: &[&Host]) -> Vec<String> {
        hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// For each host name, its shard (1-based) under `count`.
    fn assignment(hosts: &[Host], count: u32) -> HashMap<String, u32> {
        let mut out = HashMap::new();
        for k in 1..=count {
            for h in slice(hosts, Shard { index: k, count }) {
                assert!(
                    out.insert(h.name.clone(), k).is_none(),
                    "{} is in two shards",
                    h.name
                );
            }
        }
        out
    }

    fn fleet() -> impl Strategy<Value = Vec<Host>> {
        // Up to 60 hosts over up to 25 clusters; names unique by index.
        prop::collection::vec(0u32..25, 1..60).prop_map(|clusters| {
            clusters
                .into_iter()
                .enumerate()
                .map(|(i, c)| host(&format!("mx{i}.c{c}.example"), &format!("c{c}")))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn shards_are_disjoint_and_cover_the_selection(hosts in fleet(), count in 1u32..9) {
            let a = assignment(&hosts, count);
            prop_assert_eq!(a.len(), hosts.len());
            for h in &hosts {
                prop_assert_eq!(a[&h.name], shard_of(&h.cluster, count));
            }
        }

        #[test]
        fn nodes_of_one_cluster_share_a_shard(hosts in fleet(), count in 1u32..9) {
            let a = assignment(&hosts, count);
            let mut by_cluster: HashMap<&str, u32> = HashMap::new();
            for h in &hosts {
                let k = *by_cluster.entry(&h.cluster).or_insert(a[&h.name]);
                prop_assert_eq!(k, a[&h.name], "cluster {} split", h.cluster);
            }
        }

        #[test]
        fn reordering_hosts_changes_nothing(hosts in fleet(), count in 1u32..9, seed in any::<u64>()) {
            let mut shuffled = hosts.clone();
            // A deterministic permutation from the seed (Fisher-Yates with an LCG).
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            prop_assert_eq!(assignment(&hosts, count), assignment(&shuffled, count));
        }

        #[test]
        fn adding_a_host_in_a_new_cluster_moves_only_that_host(
            hosts in fleet(), count in 1u32..9, at in any::<prop::sample::Index>()
        ) {
            let before = assignment(&hosts, count);
            let mut grown = hosts.clone();
            grown.insert(at.index(hosts.len() + 1), host("new.example", "brand-new-cluster"));
            let mut after = assignment(&grown, count);
            prop_assert!(after.remove("new.example").is_some());
            prop_assert_eq!(before, after);
        }
    }

    #[test]
    fn a_shard_keeps_inventory_order() {
        let hosts: Vec<Host> = (0..40)
            .map(|i| host(&format!("h{i}"), &format!("c{}", i % 7)))
            .collect();
        let refs: Vec<&Host> = hosts.iter().collect();
        for k in 1..=3 {
            let got = slice(refs.iter().copied(), Shard { index: k, count: 3 });
            let expected: Vec<&Host> = refs
                .iter()
                .copied()
                .filter(|h| shard_of(&h.cluster, 3) == k)
                .collect();
            assert_eq!(names(&got), names(&expected));
        }
    }

    #[test]
    fn one_shard_holds_everything_and_the_split_is_fair() {
        assert!((0..100).all(|i| shard_of(&format!("c{i}"), 1) == 1));
        // 4,000 clusters over 4 shards: each gets its quarter within 10%.
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[(shard_of(&format!("customer-{i}"), 4) - 1) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..=1100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn growing_n_moves_only_clusters_that_go_to_the_new_shard() {
        // The rendezvous property: going from N to N+1 shards, a cluster either stays
        // where it was or moves to shard N+1.
        for i in 0..500 {
            let c = format!("c{i}");
            let (old, new) = (shard_of(&c, 5), shard_of(&c, 6));
            assert!(new == old || new == 6, "{c}: {old} -> {new}");
        }
    }

    #[test]
    fn parse_and_display_round_trip() {
        let s: Shard = "3/8".parse().unwrap();
        assert_eq!(s, Shard { index: 3, count: 8 });
        assert_eq!(s.to_string(), "3/8");
    }
}
