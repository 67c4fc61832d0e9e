//! Names and orderings shared by the renderers: the wire names of verdicts (as in
//! report.json), which verdicts count as failing, and how bad each one is (for drift).

use super::model::{HostStatus, ProbeVerdict, Verdict};

/// The report.json spelling of a control verdict.
pub fn verdict_str(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Compliant => "compliant",
        Verdict::NonCompliant => "non-compliant",
        Verdict::Masked => "masked",
        Verdict::NotApplicable => "not-applicable",
        Verdict::Error => "error",
    }
}

/// The report.json spelling of a probe verdict.
pub fn probe_verdict_str(verdict: ProbeVerdict) -> &'static str {
    match verdict {
        ProbeVerdict::Pass => "pass",
        ProbeVerdict::Fail => "fail",
        ProbeVerdict::NotApplicable => "not-applicable",
        ProbeVerdict::Error => "error",
    }
}

/// Badness of a control verdict: 0 fine, 1 unknown (could not evaluate), 2 off.
pub fn verdict_rank(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Compliant | Verdict::NotApplicable => 0,
        Verdict::Error => 1,
        Verdict::NonCompliant | Verdict::Masked => 2,
    }
}

/// Badness of a probe verdict, on the same scale as [`verdict_rank`].
pub fn probe_verdict_rank(verdict: ProbeVerdict) -> u8 {
    match verdict {
        ProbeVerdict::Pass | ProbeVerdict::NotApplicable => 0,
        ProbeVerdict::Error => 1,
        ProbeVerdict::Fail => 2,
    }
}

/// Badness of a host status. A host not attempted tells nothing, so it ranks with
/// compliant: going from there to drift is new drift, going there from drift is not a fix.
pub fn status_rank(status: HostStatus) -> u8 {
    match status {
        HostStatus::Compliant | HostStatus::NotAttempted => 0,
        HostStatus::RestartPending => 1,
        HostStatus::Drift => 2,
        HostStatus::Failed => 3,
    }
}

/// Human label of a host status (section titles, tables).
pub fn status_title(status: HostStatus) -> &'static str {
    match status {
        HostStatus::Failed => "Failed",
        HostStatus::Drift => "Drift",
        HostStatus::RestartPending => "Restart pending",
        HostStatus::Compliant => "Compliant",
        HostStatus::NotAttempted => "Not attempted",
    }
}

/// Every host status, worst first: the order of report sections and summaries.
pub const STATUS_ORDER: [HostStatus; 5] = [
    HostStatus::Failed,
    HostStatus::Drift,
    HostStatus::RestartPending,
    HostStatus::NotAttempted,
    HostStatus::Compliant,
];
