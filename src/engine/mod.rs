//! The engine: gather, verdicts, plan, apply and rollout scheduling. It hands back
//! typed outcomes and errors ([`outcome`]) and is told of interrupts through a handle
//! ([`interrupt`]); it never prints, prompts, handles signals or exits: the command line
//! does. This module only declares its parts; each lives in its own file.

pub mod apply;
pub mod changes;
pub mod check;
pub mod domains;
pub mod events;
pub mod gather;
pub mod interrupt;
pub mod journal;
pub mod lock;
pub mod outcome;
pub mod plan;
pub mod plan_file;
pub mod policy_probe;
pub mod posture;
pub mod rollout;
pub mod run;
pub mod smtp;
pub mod spawn_fix;
pub mod stage;
pub mod vantage;
pub mod verdict;
