//! What hawser tells users in the cluster, where they look: the Ingress ADDRESS column
//! (`status.loadBalancer`), WebSocketRoute conditions, Gateway API status ([`gateway`]), and
//! Warning Events. [`desired`] computes
//! it from a build (pure, tested); [`writer`] writes only what changed, only on the leader;
//! [`lease`] elects that leader.

pub mod condition;
pub mod desired;
pub mod gateway;
pub mod lease;
pub mod writer;
