// rtnetlink requests built by hand: RTM_NEWLINK (veth, up, MAC, alias, rename), RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE.
#include "daemon/net/rtnetlink.h"

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cstring>

#include "base/errno_error.h"

namespace kiln::daemon::net {
namespace {

// A netlink message under construction, with nested attributes. Sizes here are a few hundred
// bytes; the buffer is fixed and every append is checked.
class Message {
public:
    Message(uint16_t type, uint16_t flags) {
        header()->nlmsg_type = type;
        header()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
        header()->nlmsg_len = NLMSG_HDRLEN;
    }
    nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(m_buf); }
    template <typename T>
    T* append_struct() {
        T* p = static_cast<T*>(reserve(NLMSG_ALIGN(sizeof(T))));
        return p;
    }
    void attr(uint16_t type, const void* data, size_t length) {
        auto* a = static_cast<rtattr*>(reserve(RTA_SPACE(length)));
        if (!a) return;
        a->rta_type = type;
        a->rta_len = static_cast<uint16_t>(RTA_LENGTH(length));
        std::memcpy(RTA_DATA(a), data, length);
    }
    void attr_string(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
    void attr_u32(uint16_t type, uint32_t v) { attr(type, &v, sizeof v); }
    // Opens a nested attribute; close it with end_nest(offset).
    size_t begin_nest(uint16_t type) {
        size_t offset = header()->nlmsg_len;
        attr(type, nullptr, 0);
        return offset;
    }
    void end_nest(size_t offset) {
        reinterpret_cast<rtattr*>(m_buf + offset)->rta_len = static_cast<uint16_t>(header()->nlmsg_len - offset);
    }
    bool overflowed() const { return m_overflow; }
    size_t length() { return header()->nlmsg_len; }

private:
    void* reserve(size_t n) {
        size_t at = header()->nlmsg_len;
        if (at + n > sizeof m_buf) {
            m_overflow = true;
            return nullptr;
        }
        std::memset(m_buf + at, 0, n);
        header()->nlmsg_len = static_cast<uint32_t>(at + n);
        return m_buf + at;
    }
    alignas(nlmsghdr) char m_buf[1024] = {};
    bool m_overflow = false;
};

}  // namespace

Result<RtNetlink> RtNetlink::open() {
    UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!fd) return errno_error("open a netlink socket");
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return errno_error("bind netlink");
    return RtNetlink(std::move(fd));
}

Status RtNetlink::request(void* message, size_t length, const std::string& what) {
    auto* h = static_cast<nlmsghdr*>(message);
    h->nlmsg_seq = ++m_seq;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(m_fd.get(), message, length, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return errno_error("netlink " + what);
    alignas(nlmsghdr) char reply[4096];
    for (;;) {
        ssize_t n = ::recv(m_fd.get(), reply, sizeof reply, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("netlink reply to " + what);
        for (auto* r = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(r, static_cast<unsigned>(n)); r = NLMSG_NEXT(r, n)) {
            if (r->nlmsg_seq != m_seq || r->nlmsg_type != NLMSG_ERROR) continue;
            int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
            if (err == 0) return ok_status();
            Error e = errno_error(what, err);
            if (err == ENODEV || err == ENOENT) e.code = ErrorCode::NotFound;
            if (err == EEXIST) e.code = ErrorCode::Conflict;
            return e;
        }
    }
}

Result<int> RtNetlink::index_of(const std::string& name) {
    // if_nametoindex resolves in the *calling thread's* namespace; ask this socket's instead.
    Message m(RTM_GETLINK, 0);
    m.append_struct<ifinfomsg>()->ifi_family = AF_UNSPEC;
    m.attr_string(IFLA_IFNAME, name);
    m.header()->nlmsg_seq = ++m_seq;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(m_fd.get(), m.header(), m.length(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        return errno_error("netlink get link " + name);
    alignas(nlmsghdr) char reply[8192];
    int index = 0;
    for (;;) {
        ssize_t n = ::recv(m_fd.get(), reply, sizeof reply, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("netlink reply to get link " + name);
        for (auto* r = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(r, static_cast<unsigned>(n)); r = NLMSG_NEXT(r, n)) {
            if (r->nlmsg_seq != m_seq) continue;
            if (r->nlmsg_type == RTM_NEWLINK) index = reinterpret_cast<ifinfomsg*>(NLMSG_DATA(r))->ifi_index;
            if (r->nlmsg_type == NLMSG_ERROR) {
                int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
                if (err == 0) return index;  // the ACK after the answer
                Error e = errno_error("netlink get link " + name, err);
                if (err == ENODEV || err == ENOENT) e.code = ErrorCode::NotFound;
                return e;
            }
        }
    }
}

Status RtNetlink::create_veth(const std::string& name, const std::string& peer_name, int peer_netns_fd) {
    Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.append_struct<ifinfomsg>()->ifi_family = AF_UNSPEC;
    m.attr_string(IFLA_IFNAME, name);
    size_t linkinfo = m.begin_nest(IFLA_LINKINFO);
    m.attr_string(IFLA_INFO_KIND, "veth");
    size_t data = m.begin_nest(IFLA_INFO_DATA);
    size_t peer = m.begin_nest(VETH_INFO_PEER);
    m.append_struct<ifinfomsg>()->ifi_family = AF_UNSPEC;
    m.attr_string(IFLA_IFNAME, peer_name);
    m.attr_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
    m.end_nest(peer);
    m.end_nest(data);
    m.end_nest(linkinfo);
    if (m.overflowed()) return make_error(ErrorCode::Internal, "netlink message too long");
    return request(m.header(), m.length(), "create veth " + name);
}

Status RtNetlink::delete_link(const std::string& name) {
    Message m(RTM_DELLINK, 0);
    m.append_struct<ifinfomsg>()->ifi_family = AF_UNSPEC;
    m.attr_string(IFLA_IFNAME, name);
    return request(m.header(), m.length(), "delete link " + name);
}

Status RtNetlink::link_up(const std::string& name, const std::string& mac, const std::string& alias) {
    Message m(RTM_NEWLINK, 0);
    auto* info = m.append_struct<ifinfomsg>();
    info->ifi_family = AF_UNSPEC;
    info->ifi_flags = IFF_UP;
    info->ifi_change = IFF_UP;
    m.attr_string(IFLA_IFNAME, name);
    if (!mac.empty()) {
        unsigned char bytes[6];
        if (std::sscanf(mac.c_str(), "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx", &bytes[0], &bytes[1], &bytes[2], &bytes[3],
                        &bytes[4], &bytes[5]) != 6)
            return make_error(ErrorCode::InvalidArgument, "bad MAC " + mac);
        m.attr(IFLA_ADDRESS, bytes, sizeof bytes);
    }
    if (!alias.empty()) m.attr(IFLA_IFALIAS, alias.data(), alias.size());
    return request(m.header(), m.length(), "set " + name + " up");
}

Status RtNetlink::set_link(int index, const std::string& new_name, const std::string& alias, std::optional<bool> up) {
    Message m(RTM_NEWLINK, 0);
    auto* info = m.append_struct<ifinfomsg>();
    info->ifi_family = AF_UNSPEC;
    info->ifi_index = index;
    if (up) {
        info->ifi_flags = *up ? IFF_UP : 0;
        info->ifi_change = IFF_UP;
    }
    if (!new_name.empty()) m.attr_string(IFLA_IFNAME, new_name);
    if (!alias.empty()) m.attr(IFLA_IFALIAS, alias.data(), alias.size());
    return request(m.header(), m.length(), "set link " + std::to_string(index) + (new_name.empty() ? "" : " name " + new_name));
}

Status RtNetlink::rename_link(const std::string& name, const std::string& new_name, const std::string& alias) {
    int index = TRY(index_of(name));
    Status live = set_link(index, new_name, alias, std::nullopt);
    if (live.ok() || live.error().code == ErrorCode::Conflict) return live;
    // An older kernel refuses to rename an up link (EBUSY).
    TRY(set_link(index, "", "", false));
    TRY(set_link(index, new_name, alias, std::nullopt));
    return set_link(index, "", "", true);
}

Status RtNetlink::add_address(const std::string& name, uint32_t address, uint8_t prefix) {
    int index = TRY(index_of(name));
    Message m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    auto* a = m.append_struct<ifaddrmsg>();
    a->ifa_family = AF_INET;
    a->ifa_prefixlen = prefix;
    a->ifa_index = static_cast<uint32_t>(index);
    uint32_t be = htonl(address);
    m.attr(IFA_LOCAL, &be, 4);
    m.attr(IFA_ADDRESS, &be, 4);
    return request(m.header(), m.length(), "add address to " + name);
}

Status RtNetlink::add_default_route(uint32_t gateway) {
    Message m(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    auto* r = m.append_struct<rtmsg>();
    r->rtm_family = AF_INET;
    r->rtm_table = RT_TABLE_MAIN;
    r->rtm_protocol = RTPROT_BOOT;
    r->rtm_scope = RT_SCOPE_UNIVERSE;
    r->rtm_type = RTN_UNICAST;
    uint32_t be = htonl(gateway);
    m.attr(RTA_GATEWAY, &be, 4);
    return request(m.header(), m.length(), "add default route");
}

}  // namespace kiln::daemon::net
