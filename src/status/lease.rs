//! Leader election on a `coordination.k8s.io/v1` Lease: every replica serves traffic, only the
//! leader writes status and Events. The holder renews the Lease every `renew` interval; when it
//! stops (it died), another replica takes the Lease once `duration` has passed since the last
//! renewal. Writes carry the Lease's `resourceVersion`, so two replicas racing for it cannot
//! both win (the API server answers 409 to the loser).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Where and as whom to run for leader.
#[derive(Clone, Debug)]
pub struct Election {
    /// Lease name (`--election-id`).
    pub name: String,
    /// Lease namespace (the Pod's).
    pub namespace: String,
    /// This replica (the Pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews (and followers look).
    pub renew: Duration,
}

/// What to do with the Lease as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder stopped renewing more than `duration` ago (or it has none): take it.
    TakeOver,
    /// Someone else holds it and is alive.
    Follow,
}

/// The decision for `lease` at `now`, for `identity`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp, duration: Duration) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_none() { Decision::Create } else { Decision::TakeOver };
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let held_for = spec
                .lease_duration_seconds
                .map_or(duration, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
            let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
            let expired =
                last.is_none_or(|last| now.duration_since(last).as_secs_f64() > held_for.as_secs_f64());
            if expired { Decision::TakeOver } else { Decision::Follow }
        }
    }
}

/// Runs for leader until the task is dropped, telling `leader` whether this replica leads.
pub async fn run(client: Client, election: Election, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    loop {
        let leading = match round(&api, &election).await {
            Ok(leading) => leading,
            Err(error) => {
                tracing::warn!(%error, lease = %election.name, "leader election round failed");
                false
            }
        };
        leader.send_if_modified(|current| {
            let changed = *current != leading;
            if changed {
                tracing::info!(leading, identity = %election.identity, "leadership changed");
            }
            *current = leading;
            changed
        });
        tokio::time::sleep(election.renew).await;
    }
}

/// One look at the Lease; true when this replica holds it afterwards.
async fn round(api: &Api<Lease>, election: &Election) -> Result<bool, kube::Error> {
    let lease = api.get_opt(&election.name).await?;
    let now = Timestamp::now();
    match decide(lease.as_ref(), &election.identity, now, election.duration) {
        Decision::Follow => Ok(false),
        Decision::Create => {
            let fresh = Lease {
                metadata: ObjectMeta { name: Some(election.name.clone()), ..Default::default() },
                spec: None,
            };
            claim(api, fresh, election, now, true).await
        }
        decision => {
            let Some(lease) = lease else { return Ok(false) };
            claim(api, lease, election, now, decision == Decision::TakeOver).await
        }
    }
}

/// Writes `lease` as held by us; a conflict means another replica won the race.
async fn claim(
    api: &Api<Lease>,
    mut lease: Lease,
    election: &Election,
    now: Timestamp,
    acquire: bool,
) -> Result<bool, kube::Error> {
    let previous = lease.spec.take().unwrap_or_default();
    let transitions =
        previous.lease_transitions.unwrap_or(0) + i32::from(acquire && previous.holder_identity.is_some());
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(election.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(election.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if acquire { Some(MicroTime(now)) } else { previous.acquire_time },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..previous
    });
    let written = if lease.metadata.resource_version.is_none() {
        api.create(&PostParams::default(), &lease).await
    } else {
        api.replace(&election.name, &PostParams::default(), &lease).await
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, now: Timestamp) -> Lease {
        let renewed =
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago)).expect("time");
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::now();
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", now, d), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"), 3, now)), "a", now, d), Decision::Renew);
        assert_eq!(decide(Some(&lease(Some("a"), 60, now)), "a", now, d), Decision::Renew);
        assert_eq!(decide(Some(&lease(Some("b"), 3, now)), "a", now, d), Decision::Follow);
        assert_eq!(decide(Some(&lease(Some("b"), 16, now)), "a", now, d), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(None, 1, now)), "a", now, d), Decision::TakeOver);
        assert_eq!(decide(Some(&Lease::default()), "a", now, d), Decision::TakeOver);
    }
}
