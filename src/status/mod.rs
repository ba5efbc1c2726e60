//! What hawser tells users in the cluster, where they look: the Ingress ADDRESS column
//! (`status.loadBalancer`), WebSocketRoute conditions, and Warning Events. [`desired`] computes
//! it from a build (pure, tested); [`writer`] writes only what changed, only on the leader;
//! [`lease`] elects that leader.

pub mod desired;
pub mod lease;
pub mod writer;
