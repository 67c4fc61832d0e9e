//! Reports.

pub mod model;
