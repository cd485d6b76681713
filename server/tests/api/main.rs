//! Black-box tests of the API through the real router, against a real database (SQLite, or
//! PostgreSQL with `FLEETPLANE_TEST_DATABASE=postgres`) and a real SMTP server.

mod accounts;
mod catalog;
mod cli;
mod cloud_accounts;
mod contract;
mod deployments;
mod errors;
mod fleet_proxy;
mod google;
mod headers;
mod helm_jobs;
mod invitations;
mod kube_tokens;
mod live;
mod operations;
mod orgs;
mod provisioning;
mod replicas;
mod retention;
mod security;
mod serve;
mod sessions;
mod support;
mod tokens;
