//! Node-local mode's dummy interface (node-cache's `nodelocaldns`): a link of kind dummy holding each
//! local IP as a host address, through netlink (`rtnetlink`). A kernel without the dummy link type
//! (`CONFIG_DUMMY` unset) cannot have it: that is said plainly, with what to do instead.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkDummy};

/// errno values netlink answers with.
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

async fn connect() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, String> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(format!("interface {name}: {e}")),
    }
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ensured {
    Present,
    Created,
}

/// Makes sure the dummy link exists, is up and holds every address.
pub(super) async fn ensure(name: &str, ips: &[IpAddr]) -> Result<Ensured, String> {
    let handle = connect().await?;
    let mut outcome = Ensured::Present;
    let index = match link_index(&handle, name).await? {
        Some(i) => i,
        None => {
            if let Err(e) = handle.link().add(LinkDummy::new(name).up().build()).execute().await {
                return Err(if errno(&e) == Some(EOPNOTSUPP) {
                    format!(
                        "cannot create interface {name}: this kernel has no dummy link type (CONFIG_DUMMY is not set or the dummy module is not loaded); put the -localip addresses on an interface yourself (e.g. ip addr add IP/32 dev lo) and run with -setupinterface=false"
                    )
                } else {
                    format!("cannot create dummy interface {name}: {e}")
                });
            }
            outcome = Ensured::Created;
            link_index(&handle, name).await?.ok_or_else(|| format!("interface {name} vanished right after it was created"))?
        }
    };
    for ip in ips {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        match handle.address().add(index, *ip, prefix).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(format!("cannot add {ip}/{prefix} to {name}: {e}")),
        }
    }
    Ok(outcome)
}

/// Deletes the link (its addresses go with it); a link already gone is not an error.
pub(super) async fn remove(name: &str) -> Result<(), String> {
    let handle = connect().await?;
    if let Some(index) = link_index(&handle, name).await? {
        handle.link().del(index).execute().await.map_err(|e| format!("cannot delete interface {name}: {e}"))?;
    }
    Ok(())
}
