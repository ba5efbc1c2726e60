//! Request rate limits per client IP and route (ingress-nginx's `limit-rps` / `limit-rpm`, per
//! replica): a token bucket per (route, client, rate) that holds `burst` requests and refills
//! at the rate, as nginx's `limit_req ... burst=N nodelay`. Past it, `503` (or `429`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::model::RateLimit;

/// Above this many buckets, those full again (idle long enough) are dropped on the next check.
const PRUNE_ABOVE: usize = 16_384;

/// A route, a client, and which of the route's rates.
type BucketKey = (Arc<str>, IpAddr, usize);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every route and client, kept across table swaps (keyed by route name).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

impl RateLimiter {
    /// Takes a token from each of the route's rates that counts this request (handshake-only
    /// rates count only an `upgrade`) for `client`; `false` when one is empty (then none is
    /// taken). Exempt clients always pass.
    pub fn admit(&self, route: &Arc<str>, limit: &RateLimit, client: IpAddr, upgrade: bool) -> bool {
        let client = client.to_canonical();
        if limit.exempt.iter().any(|net| net.contains(&client)) {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let refill = limit.rates.iter().map(|r| r.burst / r.per_second).fold(0.0, f64::max);
            let idle = Duration::from_secs_f64(refill.clamp(1.0, 3600.0));
            buckets.retain(|_, bucket| now.duration_since(bucket.at) < idle);
        }
        // Refill every bucket, then take a token from each only if all have one.
        let counted = |(_, rate): &(usize, &crate::model::Rate)| upgrade || !rate.upgrades_only;
        let mut room = true;
        for (index, rate) in limit.rates.iter().enumerate().filter(counted) {
            let bucket = buckets
                .entry((route.clone(), client, index))
                .or_insert(Bucket { tokens: rate.burst, at: now });
            let elapsed = now.duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
            bucket.at = now;
            room &= bucket.tokens >= 1.0;
        }
        if !room {
            return false;
        }
        for (index, _) in limit.rates.iter().enumerate().filter(counted) {
            if let Some(bucket) = buckets.get_mut(&(route.clone(), client, index)) {
                bucket.tokens -= 1.0;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rate;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::default();
        let route: Arc<str> = "r".into();
        let limit = RateLimit {
            rates: vec![Rate { per_second: 100.0, burst: 5.0, upgrades_only: false }],
            exempt: vec![],
        };
        let client = IpAddr::from([192, 0, 2, 1]);
        let passed = (0..20).filter(|_| limiter.admit(&route, &limit, client, false)).count();
        assert!((5..=7).contains(&passed), "{passed}: the burst, and what refilled meanwhile");
        std::thread::sleep(Duration::from_millis(20));
        assert!(limiter.admit(&route, &limit, client, false), "refilled at 100 a second");
        // Another client and another route have buckets of their own.
        assert!(limiter.admit(&route, &limit, IpAddr::from([192, 0, 2, 2]), false));
        assert!(limiter.admit(&"other".into(), &limit, client, false));
        // Exempt clients are never limited.
        let exempt = RateLimit { exempt: vec!["192.0.2.0/24".parse().expect("net")], ..limit };
        assert!((0..100).all(|_| limiter.admit(&route, &exempt, client, false)));
    }

    #[test]
    fn every_rate_must_have_a_token() {
        let limiter = RateLimiter::default();
        let route: Arc<str> = "r".into();
        let per_minute = RateLimit {
            rates: vec![
                Rate { per_second: 1000.0, burst: 100.0, upgrades_only: false },
                Rate { per_second: 1.0 / 60.0, burst: 3.0, upgrades_only: false },
            ],
            exempt: vec![],
        };
        let client = IpAddr::from([198, 51, 100, 7]);
        let passed = (0..10).filter(|_| limiter.admit(&route, &per_minute, client, false)).count();
        assert_eq!(passed, 3, "the per-minute rate's burst");
    }

    #[test]
    fn a_handshake_rate_counts_only_upgrades() {
        let limiter = RateLimiter::default();
        let route: Arc<str> = "r".into();
        let rates = vec![Rate { per_second: 0.001, burst: 2.0, upgrades_only: true }];
        let limit = RateLimit { rates, exempt: vec![] };
        let client = IpAddr::from([203, 0, 113, 9]);
        assert!((0..50).all(|_| limiter.admit(&route, &limit, client, false)), "plain requests pass");
        let handshakes = (0..5).filter(|_| limiter.admit(&route, &limit, client, true)).count();
        assert_eq!(handshakes, 2);
    }
}
