//! Orders to end live tunnels gracefully: shutdown, an endpoint gone from its EndpointSlices,
//! an admin drain, rebalancing. Each order says which tunnels it is for and over what window
//! their closes are spread, so the reconnect wave reaches the other replicas and endpoints
//! gradually. Tunnels watch one channel and pick out the orders that concern them; an order
//! wakes every live tunnel's task once, and a tunnel woken for any other reason looks at the
//! channel's version only (one atomic load), so a busy tunnel pays next to nothing for this.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::OwnKeyMap;
use super::frames::code;

/// Orders older than this (past their window) are forgotten when a new one is issued.
const KEEP_ORDERS: Duration = Duration::from_secs(600);

/// Why hawser drains a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// hawser is shutting down.
    Shutdown,
    /// The tunnel's endpoint left its EndpointSlices.
    EndpointGone,
    /// `POST /drain` on the admin listener.
    Admin,
    /// The route's tunnels were spread unevenly over its endpoints.
    Rebalance,
}

impl Cause {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::EndpointGone => "endpoint_gone",
            Self::Admin => "admin",
            Self::Rebalance => "rebalance",
        }
    }

    /// The close code sent to the client: 1001 Going Away when this replica leaves, 1012
    /// Service Restart ("reconnect now") when the client should simply come back.
    pub fn close_code(self) -> u16 {
        match self {
            Self::Shutdown => code::GOING_AWAY,
            Self::EndpointGone | Self::Admin | Self::Rebalance => code::SERVICE_RESTART,
        }
    }
}

/// Which tunnels an order is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every tunnel.
    All,
    /// Tunnels of this route.
    Route(Arc<str>),
    /// Tunnels to this endpoint, on any route.
    Endpoint(SocketAddr),
    /// Tunnels of this route to this endpoint.
    RouteEndpoint(Arc<str>, SocketAddr),
}

impl Selector {
    fn matches(&self, route: &str, endpoint: SocketAddr) -> bool {
        match self {
            Self::All => true,
            Self::Route(name) => **name == *route,
            Self::Endpoint(addr) => *addr == endpoint,
            Self::RouteEndpoint(name, addr) => **name == *route && *addr == endpoint,
        }
    }
}

/// One order.
#[derive(Debug)]
struct Order {
    sequence: u64,
    cause: Cause,
    selector: Selector,
    issued: Instant,
    window: Duration,
    /// At most this many tunnels take the order (rebalancing); `None`: all that match.
    quota: Option<AtomicU64>,
}

/// Live tunnels per route and endpoint.
type Census = OwnKeyMap<(Arc<str>, SocketAddr), u32>;

/// Issues drain orders; tunnels [`Drains::subscribe`] and are counted while they live and
/// have not been ordered to close.
#[derive(Debug)]
pub struct Drains {
    orders: watch::Sender<Arc<Vec<Arc<Order>>>>,
    next: AtomicU64,
    /// Numbers the subscriptions: the key of each one's waker, and its place in a window.
    tunnels: AtomicU64,
    census: Mutex<Census>,
    /// The task of every subscription that has been polled, woken by each order. (Kept here
    /// rather than in the channel's waiter list: a waiting `changed()` future would sit in
    /// every idle tunnel's task, 160 bytes each.)
    wakers: Mutex<OwnKeyMap<u64, Waker>>,
}

impl Default for Drains {
    fn default() -> Self {
        Self {
            orders: watch::Sender::new(Arc::default()),
            next: AtomicU64::new(1),
            tunnels: AtomicU64::new(0),
            census: Mutex::default(),
            wakers: Mutex::default(),
        }
    }
}

impl Drains {
    /// Orders the tunnels `selector` names (at most `quota` of them) to close with a close frame,
    /// spread evenly over `window` from now.
    pub fn order(&self, cause: Cause, selector: Selector, window: Duration, quota: Option<u64>) {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let issued = Instant::now();
        let order =
            Arc::new(Order { sequence, cause, selector, issued, window, quota: quota.map(AtomicU64::new) });
        self.orders.send_modify(|orders| {
            let mut kept: Vec<Arc<Order>> = orders
                .iter()
                .filter(|o| issued.saturating_duration_since(o.issued) < o.window + KEEP_ORDERS)
                .cloned()
                .collect();
            kept.push(order);
            *orders = Arc::new(kept);
        });
        // After the version moved: a tunnel polled from here on sees the order, and one polled
        // before it is woken now.
        for waker in self.wakers.lock().unwrap_or_else(PoisonError::into_inner).values() {
            waker.wake_by_ref();
        }
    }

    /// What a new tunnel of `route` to `endpoint` watches: orders issued from now on. The tunnel
    /// is counted until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, route: Arc<str>, endpoint: SocketAddr) -> Subscription {
        let receiver = self.orders.subscribe();
        // A shutdown under way applies to tunnels opened during it too (the last handshakes).
        let shutdown =
            receiver.borrow().iter().rev().find(|o| o.cause == Cause::Shutdown).map(|o| o.sequence);
        let seen = shutdown.map_or(self.next.load(Ordering::Relaxed), |sequence| sequence).saturating_sub(1);
        let id = self.tunnels.fetch_add(1, Ordering::Relaxed);
        *self.census().entry((route.clone(), endpoint)).or_default() += 1;
        Subscription {
            drains: self.clone(),
            receiver,
            seen,
            id,
            route,
            endpoint,
            counted: true,
            polled: false,
        }
    }

    /// Live tunnels `selector` names.
    pub fn count(&self, selector: &Selector) -> u64 {
        let census = self.census();
        census
            .iter()
            .filter(|((route, endpoint), _)| selector.matches(route, *endpoint))
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Live tunnels of `route`, per endpoint.
    pub fn per_endpoint(&self, route: &str) -> HashMap<SocketAddr, u32> {
        let census = self.census();
        let of_route = census.iter().filter(|((name, _), _)| **name == *route);
        of_route.map(|((_, endpoint), n)| (*endpoint, *n)).collect()
    }

    fn census(&self) -> std::sync::MutexGuard<'_, Census> {
        self.census.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, OwnKeyMap<u64, Waker>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One tunnel's view of the drain orders.
#[derive(Debug)]
pub struct Subscription {
    drains: Arc<Drains>,
    receiver: watch::Receiver<Arc<Vec<Arc<Order>>>>,
    seen: u64,
    /// The subscription's number: the key of its waker, and its place in a window.
    id: u64,
    route: Arc<str>,
    endpoint: SocketAddr,
    /// In the census: live and not yet ordered to close.
    counted: bool,
    /// Polled once: its task's waker is registered and the orders before it were looked at.
    polled: bool,
}

impl Subscription {
    /// The endpoint of the tunnel this subscription is for.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// An order that takes this tunnel: its cause and when this tunnel's turn in the window
    /// comes. A subscription is polled from one task: the first poll registers that task's
    /// waker, which every order wakes.
    pub fn poll_order(&mut self, cx: &Context<'_>) -> Poll<(Cause, Instant)> {
        if !self.polled {
            // The waker first: an order issued after this line wakes the task.
            self.drains.wakers().insert(self.id, cx.waker().clone());
            self.polled = true;
        } else if !self.receiver.has_changed().unwrap_or(false) {
            return Poll::Pending;
        }
        let orders = self.receiver.borrow_and_update().clone();
        let seen = self.seen;
        for order in orders.iter().filter(|o| o.sequence > seen) {
            self.seen = order.sequence;
            if order.selector.matches(&self.route, self.endpoint) && take_place(order) {
                // Closing now: no longer counted for drains and rebalancing to come.
                self.uncount();
                // Consecutive tunnels land far apart in any window (golden-ratio sequence).
                let place = self.id as u32;
                return Poll::Ready((order.cause, order.issued + spread(order.window, place)));
            }
        }
        Poll::Pending
    }

    /// Waits for an order that takes this tunnel (see [`Self::poll_order`]).
    #[cfg(test)]
    pub async fn next(&mut self) -> (Cause, Instant) {
        std::future::poll_fn(|cx| self.poll_order(cx)).await
    }

    fn uncount(&mut self) {
        if !std::mem::take(&mut self.counted) {
            return;
        }
        let mut census = self.drains.census();
        let key = (self.route.clone(), self.endpoint);
        if let Some(count) = census.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                census.remove(&key);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.uncount();
        if self.polled {
            self.drains.wakers().remove(&self.id);
        }
    }
}

fn take_place(order: &Order) -> bool {
    order.quota.as_ref().is_none_or(|quota| {
        quota.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1)).is_ok()
    })
}

/// The offset of the tunnel at `place` in `window`: the fractional part of `place × φ`, which
/// spreads any number of consecutive tunnels evenly.
fn spread(window: Duration, place: u32) -> Duration {
    const PHI_FRACTION: f64 = 0.618_033_988_749_894_9;
    window.mul_f64((f64::from(place) * PHI_FRACTION).fract())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_spread_evenly_over_the_window() {
        let window = Duration::from_secs(10);
        let mut offsets: Vec<Duration> = (0..200).map(|place| spread(window, place)).collect();
        offsets.sort();
        // Every tenth of the window holds about a tenth of the closes.
        for tenth in 0..10 {
            let (from, to) = (window * tenth / 10, window * (tenth + 1) / 10);
            let count = offsets.iter().filter(|o| **o >= from && **o < to).count();
            assert!((15..=25).contains(&count), "tenth {tenth}: {count}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn orders_reach_only_the_tunnels_they_name_and_quotas_are_kept() {
        let drains = Arc::new(Drains::default());
        let route: Arc<str> = Arc::from("r");
        let (a, b): (SocketAddr, SocketAddr) = (([10, 0, 0, 1], 80).into(), ([10, 0, 0, 2], 80).into());
        let mut on_a = drains.subscribe(route.clone(), a);
        let mut on_b = drains.subscribe(route.clone(), b);
        let mut also_on_a = drains.subscribe(route.clone(), a);
        assert_eq!(drains.count(&Selector::Endpoint(a)), 2);
        assert_eq!(drains.count(&Selector::Route(route.clone())), 3);
        drains.order(Cause::EndpointGone, Selector::Endpoint(a), Duration::ZERO, None);
        assert_eq!(on_a.next().await.0, Cause::EndpointGone);
        let not_b = tokio::time::timeout(Duration::from_millis(10), on_b.next()).await;
        assert!(not_b.is_err(), "an order for endpoint a reached a tunnel to b");
        drains.order(Cause::Rebalance, Selector::RouteEndpoint(route.clone(), a), Duration::ZERO, Some(1));
        // `also_on_a` sees the endpoint order first; the rebalance quota of one is left for `on_a`.
        assert_eq!(also_on_a.next().await.0, Cause::EndpointGone);
        assert_eq!(on_a.next().await.0, Cause::Rebalance);
        let none_left = tokio::time::timeout(Duration::from_millis(10), also_on_a.next()).await;
        assert!(none_left.is_err(), "the quota of one was taken twice");
        // A tunnel opened after an order is not touched by it.
        let mut late = drains.subscribe(route.clone(), a);
        let untouched = tokio::time::timeout(Duration::from_millis(10), late.next()).await;
        assert!(untouched.is_err(), "{untouched:?}");
        // But a tunnel opened during a shutdown is drained with the others.
        drains.order(Cause::Shutdown, Selector::All, Duration::ZERO, None);
        drains.order(Cause::Admin, Selector::Endpoint(b), Duration::ZERO, None);
        let mut during_shutdown = drains.subscribe(route.clone(), a);
        assert_eq!(during_shutdown.next().await.0, Cause::Shutdown);
        drop((on_a, also_on_a, late, during_shutdown));
        assert_eq!(drains.count(&Selector::Endpoint(a)), 0);
        assert_eq!(drains.count(&Selector::Endpoint(b)), 1);
    }

    /// Counts the wake-ups of the task.
    #[derive(Default)]
    struct Task(std::sync::atomic::AtomicU32);

    impl std::task::Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_order_wakes_a_polled_subscription_once_and_only_its_own_takes_it() {
        let drains = Arc::new(Drains::default());
        let (a, b): (SocketAddr, SocketAddr) = (([10, 0, 0, 1], 80).into(), ([10, 0, 0, 2], 80).into());
        let mut on_a = drains.subscribe(Arc::from("r"), a);
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let cx = Context::from_waker(&waker);
        assert!(on_a.poll_order(&cx).is_pending());
        assert!(on_a.poll_order(&cx).is_pending(), "wake-ups for other reasons find nothing");
        drains.order(Cause::Admin, Selector::Endpoint(b), Duration::ZERO, None);
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "an order wakes the task");
        assert!(on_a.poll_order(&cx).is_pending(), "an order for another endpoint does not take it");
        drains.order(Cause::EndpointGone, Selector::Endpoint(a), Duration::ZERO, None);
        assert_eq!(task.0.load(Ordering::Relaxed), 2);
        assert!(matches!(on_a.poll_order(&cx), Poll::Ready((Cause::EndpointGone, _))));
        drop(on_a);
        assert!(drains.wakers().is_empty(), "a dropped subscription leaves no waker behind");
    }
}
