//! Integration tests: reqwest against an in-process simulator on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod batch;
mod common;
mod conformance;
mod delta;
mod faults;
mod fidelity;
mod hardening;
mod limits;
mod metadata;
mod query;
mod role;
mod scale;
mod snapshot;
mod write;
