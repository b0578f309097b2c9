// API benchmark: kilnd's create (POST /v1/sandboxes until 201, exec-ready) beside the library-level
// restore of the same guest in the same run; creates and DELETEs with an allowlist NIC beside those
// without one (p50, p99, ratio); and create+exec+delete cycles per second at concurrency 1, 4 and 8. Starts its own kilnd on a free port with a fresh data dir. `make bench`.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/child_process.h"
#include "base/clock.h"
#include "base/random.h"
#include "bench_util.h"
#include "stats.h"
#include "vm/accel.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"

using namespace kiln;
using namespace kiln::bench;
using json = nlohmann::json;

namespace {

// kilnd as a child process on its own data dir and port, with one token.
class Daemon {
public:
    Daemon(const std::string& kilnd, const std::string& data_dir) : m_kilnd(kilnd), m_data_dir(data_dir) {
        std::filesystem::create_directories(data_dir);
        ::setenv("KILN_DATA_DIR", data_dir.c_str(), 1);
        m_port = 17000 + static_cast<int>(getpid() % 2000);
        std::string listen = "127.0.0.1:" + std::to_string(m_port);
        ::setenv("KILN_LISTEN", listen.c_str(), 1);
        ::setenv("KILN_MAX_SANDBOXES", "64", 1);
        m_log = data_dir + "/kilnd.log";
        std::string cmd = "'" + kilnd + "' token create --name bench --scope admin";
        FILE* p = ::popen(cmd.c_str(), "r");
        if (!p) fail("cannot run kilnd token create");
        char buf[256] = {};
        if (!std::fgets(buf, sizeof buf, p)) fail("kilnd token create printed nothing");
        ::pclose(p);
        m_token = buf;
        while (!m_token.empty() && (m_token.back() == '\n' || m_token.back() == '\r')) m_token.pop_back();

        UniqueFd log_fd(::open(m_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        SpawnOptions options;
        options.argv = {kilnd, "serve"};
        options.stderr_fd = log_fd.get();
        options.stdout_fd = log_fd.get();
        options.env = inherited_environment();  // the KILN_* config set above
        m_process = must(ChildProcess::spawn(options), "start kilnd");
        for (int i = 0; i < 600; ++i) {
            if (auto r = client().Get("/healthz"); r && r->status == 200) return;
            if (m_process->wait_for(Millis(0))) fail("kilnd exited at start; see " + m_log);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        fail("kilnd did not answer /healthz in 60 s; see " + m_log);
    }
    ~Daemon() {
        if (m_process) {
            (void)m_process->kill(SIGTERM);
            if (!m_process->wait_for(Millis(30000))) m_process->kill_and_reap();
        }
        std::error_code ec;
        std::filesystem::remove_all(m_data_dir, ec);
    }

    const std::string& log_path() const { return m_log; }
    pid_t pid() const { return m_process->pid(); }

    httplib::Client client() const {
        httplib::Client c("127.0.0.1", m_port);
        c.set_bearer_token_auth(m_token.c_str());
        c.set_read_timeout(120, 0);
        c.set_keep_alive(true);
        c.set_tcp_nodelay(true);  // as curl and Python's http.client do; see src/cli/api_client.cpp
        return c;
    }

private:
    std::string m_kilnd, m_data_dir, m_log, m_token;
    int m_port = 0;
    std::unique_ptr<ChildProcess> m_process;
};

constexpr const char* kPlainCreate = R"({"template":"tiny","ttl_seconds":600})";
// An allowlist NIC (a documentation address: the bench sends no traffic).
constexpr const char* kNicCreate =
    R"({"template":"tiny","ttl_seconds":600,"network":{"mode":"allowlist","allow":["192.0.2.7:443"]}})";

std::string create(httplib::Client& c, const char* body = kPlainCreate) {
    auto r = c.Post("/v1/sandboxes", body, "application/json");
    if (!r) fail("POST /v1/sandboxes: " + httplib::to_string(r.error()));
    if (r->status != 201) fail("POST /v1/sandboxes: " + std::to_string(r->status) + " " + r->body);
    return json::parse(r->body).at("id").get<std::string>();
}

void remove(httplib::Client& c, const std::string& id) {
    auto r = c.Delete("/v1/sandboxes/" + id);
    if (!r || r->status != 204) fail("DELETE " + id + ": " + (r ? r->body : httplib::to_string(r.error())));
}

std::string make_snapshot(const std::string& root) {
    vm::BootOptions options;
    options.snapshottable = true;
    auto v = must(vm::Vm::boot(options), "boot the tiny image");
    std::string dir = root + "/snap-" + must(random_hex(4), "id");
    vm::SnapshotRequest req;
    req.dir = dir;
    req.resume = false;
    must(vm::take_snapshot(*v, req), "take a snapshot");
    return dir;
}

// CPU time, in clock ticks: the whole host's busy time (/proc/stat), and one process's own and its
// reaped children's (kilnd's QEMUs are its children once reaped: a deleted sandbox's QEMU counts).
struct CpuTicks {
    uint64_t host_busy = 0, host_all = 0, own = 0, children = 0;
};

CpuTicks cpu_ticks(pid_t pid) {
    CpuTicks t;
    std::ifstream stat("/proc/stat");
    std::string cpu;
    uint64_t v[8] = {};
    stat >> cpu >> v[0] >> v[1] >> v[2] >> v[3] >> v[4] >> v[5] >> v[6] >> v[7];
    for (uint64_t x : v) t.host_all += x;
    t.host_busy = t.host_all - v[3] - v[4];  // idle, iowait
    std::ifstream proc("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(proc, line);
    auto close = line.rfind(')');
    if (close != std::string::npos) {
        std::istringstream fields(line.substr(close + 2));
        std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
        if (f.size() > 15) {  // fields 14-17 of proc(5): utime stime cutime cstime
            t.own = std::stoull(f[11]) + std::stoull(f[12]);
            t.children = std::stoull(f[13]) + std::stoull(f[14]);
        }
    }
    return t;
}

// `total` cycles of create, exec true, delete spread over `concurrency` threads: cycles per second.
// Also prints where the CPU went: a rate that stops growing with concurrency while the host's
// cores are all busy is bound by CPU, and the CPU per cycle says whose.
double cycles_per_second(const Daemon& daemon, int concurrency, int total, int* errors) {
    CpuTicks before = cpu_ticks(daemon.pid());
    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < concurrency; ++t) {
        threads.emplace_back([&] {
            auto c = daemon.client();
            while (next.fetch_add(1) < total) {
                auto r = c.Post("/v1/sandboxes", R"({"template":"tiny","ttl_seconds":600})", "application/json");
                if (!r || r->status != 201) {
                    ++failed;
                    continue;
                }
                std::string id = json::parse(r->body).at("id").get<std::string>();
                auto e = c.Post("/v1/sandboxes/" + id + "/exec", R"({"argv":["true"]})", "application/json");
                if (!e || e->status != 200) ++failed;
                auto d = c.Delete("/v1/sandboxes/" + id);
                if (!d || d->status != 204) ++failed;
            }
        });
    }
    for (auto& t : threads) t.join();
    double seconds = ms_since(start) / 1000.0;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // kilnd reaps the last QEMUs
    CpuTicks after = cpu_ticks(daemon.pid());
    const double tick_ms = 1000.0 / double(::sysconf(_SC_CLK_TCK));
    double busy = double(after.host_busy - before.host_busy), all = double(after.host_all - before.host_all);
    std::printf("  concurrency %d: host CPU busy %.0f%% of %ld cores; per cycle %.0f ms of CPU: kilnd %.0f, its QEMUs %.0f, "
                "the rest (kernel threads, this bench) %.0f\n",
                concurrency, all > 0 ? 100.0 * busy / all : 0.0, ::sysconf(_SC_NPROCESSORS_ONLN), busy * tick_ms / total,
                double(after.own - before.own) * tick_ms / total, double(after.children - before.children) * tick_ms / total,
                (busy - double(after.own - before.own) - double(after.children - before.children)) * tick_ms / total);
    *errors = failed.load();
    return total / seconds;
}

// kilnd's "sandbox created" lines with a NIC: how many took a spare, of how many.
std::pair<int, int> nic_creates_with_spare(const std::string& log_path) {
    std::ifstream in(log_path);
    std::string line;
    int spare = 0, all = 0;
    while (std::getline(in, line)) {
        auto j = json::parse(line, nullptr, false);
        if (!j.is_object() || j.value("msg", "") != "sandbox created" || !j.value("nic", false)) continue;
        ++all;
        spare += j.value("spare", false) ? 1 : 0;
    }
    return {spare, all};
}

// Creates through the API with an allowlist NIC beside creates without a NIC, interleaved so that
// both see the same load, and the DELETE of each. A NIC create takes the spare QEMU of tiny+net
// whose network was made ahead; its DELETE leaves the network's removal to the background.
void nic_vs_plain(const Daemon& daemon, int runs, const std::string& accel) {
    auto c = daemon.client();
    remove(c, create(c, kNicCreate));  // bakes tiny+net and starts its spare; not counted
    auto [spare_before, nic_before] = nic_creates_with_spare(daemon.log_path());
    std::vector<double> plain_create, nic_create, plain_delete, nic_delete;
    for (int i = 0; i < runs; ++i) {
        for (bool nic : {false, true}) {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the spare's refill (network, QEMU)
            auto start = Clock::now();
            std::string id = create(c, nic ? kNicCreate : kPlainCreate);
            (nic ? nic_create : plain_create).push_back(ms_since(start));
            start = Clock::now();
            remove(c, id);
            (nic ? nic_delete : plain_delete).push_back(ms_since(start));
        }
    }
    auto [spare_after, nic_after] = nic_creates_with_spare(daemon.log_path());
    auto pc = bench::summarize(plain_create), nc = bench::summarize(nic_create);
    auto pd = bench::summarize(plain_delete), nd = bench::summarize(nic_delete);
    bench::print_row("API create, no NIC", pc, "ms", accel);
    bench::print_row("API create, allowlist NIC", nc, "ms", accel,
                     std::to_string(spare_after - spare_before) + "/" + std::to_string(nic_after - nic_before) +
                         " took a spare; target p50 <= 65 ms");
    std::printf("%-44s p50 %.2fx, p99 %.2fx  (target p50 <= 1.15x)\n", "ratio: create with NIC / without", nc.p50 / pc.p50,
                nc.p99 / pc.p99);
    bench::print_row("API DELETE, no NIC", pd, "ms", accel);
    bench::print_row("API DELETE, allowlist NIC", nd, "ms", accel, "network removed in the background");
    std::printf("%-44s p50 %.2fx, p99 %.2fx\n", "ratio: DELETE with NIC / without", nd.p50 / pd.p50, nd.p99 / pd.p99);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const int creates = env_int("KILN_BENCH_CREATES", 50);
    const int cycles = env_int("KILN_BENCH_CYCLES", 100);
    // This binary is BUILD/bench/api_bench; kilnd is BUILD/src/kilnd/kilnd (or argv[1]).
    std::string kilnd = argc > 1 ? argv[1]
                                 : (std::filesystem::path(argv[0]).parent_path().parent_path() / "src/kilnd/kilnd").string();
    if (access(kilnd.c_str(), X_OK) != 0) fail(kilnd + " not found: build first (make build)");
    std::string accel = vm::accel_name(must(vm::choose_accel(vm::AccelMode::Auto), "accelerator").accel);

    std::string root = vm::data_dir() + "/bench-api-" + must(random_hex(4), "id");
    std::filesystem::create_directories(root);
    std::string snapshot = make_snapshot(root);
    Daemon daemon(kilnd, root + "/kilnd");
    auto c = daemon.client();
    remove(c, create(c));  // bakes the template once; not counted

    // Interleaved, so all three see the same machine load. kilnd restores built-in templates with
    // a spare QEMU started ahead (keep_spare), so the like-for-like baseline is the library restore
    // with a spare; the plain library restore (QEMU started per restore) is shown beside it.
    vm::SparePool spares;
    spares.prepare(snapshot);
    std::vector<double> api, library_spare, library_plain;
    for (int i = 0; i < creates; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));  // let kilnd's spare refill finish
        auto start = Clock::now();
        std::string id = create(c);
        api.push_back(ms_since(start));
        remove(c, id);

        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        vm::RestoreRequest req;
        req.snapshot_dir = snapshot;
        req.spares = &spares;
        start = Clock::now();
        auto v = must(vm::restore_snapshot(req), "library restore with a spare");
        library_spare.push_back(ms_since(start));
        v->destroy();

        req.spares = nullptr;
        start = Clock::now();
        auto p = must(vm::restore_snapshot(req), "library restore");
        library_plain.push_back(ms_since(start));
        p->destroy();
    }
    spares.discard();
    auto a = bench::summarize(api);
    auto l = bench::summarize(library_spare);
    bench::print_row("API create (POST until 201, exec-ready)", a, "ms", accel);
    bench::print_row("library restore_snapshot, spare (baseline)", l, "ms", accel);
    bench::print_row("library restore_snapshot, no spare", bench::summarize(library_plain), "ms", accel);
    std::printf("%-44s p50 %+9.2f ms   (target <= +10 ms; API p50 target <= 70 ms)\n", "API overhead over the library restore",
                a.p50 - l.p50);
    std::printf("%-44s %9.2fx\n", "ratio: API create / library restore (p50)", a.p50 / l.p50);

    // $KILN_BENCH_NIC_CREATES (default: as many as the creates above; 0 skips) with and without a NIC.
    if (int nic_runs = env_int("KILN_BENCH_NIC_CREATES", creates); nic_runs > 0) nic_vs_plain(daemon, nic_runs, accel);

    for (int concurrency : {1, 4, 8}) {
        int errors = 0;
        double rate = cycles_per_second(daemon, concurrency, cycles, &errors);
        std::printf("%-44s %9.2f cycles/s  (%d cycles, %d errors, accel=%s)\n",
                    ("create+exec+delete, concurrency " + std::to_string(concurrency)).c_str(), rate, cycles, errors,
                    accel.c_str());
        std::fflush(stdout);
        if (errors) return 1;
    }
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
    return 0;
}
