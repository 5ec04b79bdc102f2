//! The worker against real PostgreSQL and Redis. Each guarantee of
//! docs/design.md (section 6) that the worker owns is broken here on purpose.

mod crashes;
mod example;
mod execution;
mod leases;
mod maintenance;
mod observability;
mod ordering;
mod outages;
mod queues;
mod recovery;
mod schedules;
mod shutdown;
mod support;
mod traces;
mod transactional;
