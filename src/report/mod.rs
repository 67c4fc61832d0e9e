//! Reports: the data model of a run ([`model`]), writing it to disk atomically
//! ([`store`]) and the terminal summary ([`summary`]).

pub mod model;
pub mod store;
pub mod summary;
