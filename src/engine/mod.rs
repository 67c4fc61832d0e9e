//! The engine: gather, verdicts, plan, apply and rollout scheduling. This module only
//! declares its parts; each lives in its own file.

pub mod rollout;
