//! The `Upstream` contract (`conduit_proxy::testing`) run against the proxy's handle.

use conduit_proxy::ProxyConfig;
use conduit_proxy::testing::upstream_contract;

use crate::common::{Proxy, TestUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_handle_meets_the_contract() {
    let up = TestUpstream::start().await;
    let p = Proxy::start(ProxyConfig::default()).await;
    upstream_contract(p.registry.as_ref(), &p.handle, up.addr).await;
}
