// Unit tests for the CLI's tarballs (`kiln sandbox cp` of folders) and its API path helpers: a tar
// from a guest is hostile, so every way out of the destination must be refused.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/tar_archive.h"

using namespace kiln;
using namespace kiln::cli;
namespace fs = std::filesystem;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/kiln-cli-tar-test-XXXXXX";
    return ::mkdtemp(tmpl) ? tmpl : "/tmp";
}

struct TarEntry {
    std::string name;
    mode_t type = AE_IFREG;
    std::string data;
    std::string link;  // symlink target, or hard link target when type is 0
    mode_t perm = 0644;
    int64_t owner = 0;  // uid and gid
};

// Writes a tar with exactly these entries (what a hostile guest could send) to an unlinked file.
UniqueFd make_tar(const std::vector<TarEntry>& entries) {
    UniqueFd fd(::open("/tmp", O_TMPFILE | O_RDWR, 0600));
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open_fd(a, fd.get());
    for (const auto& e : entries) {
        archive_entry* entry = archive_entry_new();
        archive_entry_set_pathname(entry, e.name.c_str());
        archive_entry_set_perm(entry, e.perm);
        archive_entry_set_uid(entry, e.owner);
        archive_entry_set_gid(entry, e.owner);
        if (e.type == 0) {
            archive_entry_set_filetype(entry, AE_IFREG);
            archive_entry_set_hardlink(entry, e.link.c_str());
        } else {
            archive_entry_set_filetype(entry, e.type);
            if (e.type == AE_IFLNK) archive_entry_set_symlink(entry, e.link.c_str());
            archive_entry_set_size(entry, static_cast<la_int64_t>(e.data.size()));
        }
        archive_write_header(a, entry);
        if (!e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
        archive_entry_free(entry);
    }
    archive_write_close(a);
    archive_write_free(a);
    ::lseek(fd.get(), 0, SEEK_SET);
    return fd;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(CliTar, PackThenUnpackKeepsFilesModesAndSymlinks) {
    std::string root = temp_dir();
    fs::create_directories(root + "/src/sub");
    std::ofstream(root + "/src/a.txt") << "alpha\n";
    std::ofstream(root + "/src/sub/run.sh") << "#!/bin/sh\n";
    ::chmod((root + "/src/sub/run.sh").c_str(), 0755);
    fs::create_symlink("a.txt", root + "/src/link");

    auto packed = pack_folder(root + "/src", "src/");
    ASSERT_TRUE(packed.ok()) << packed.error().to_string();
    EXPECT_EQ(packed->entries, 5u);  // src/, a.txt, sub/, sub/run.sh, link
    auto names = tar_names(packed->fd.get());
    ASSERT_TRUE(names.ok()) << names.error().to_string();
    std::sort(names->begin(), names->end());
    EXPECT_EQ(*names, (std::vector<std::string>{"src", "src/a.txt", "src/link", "src/sub", "src/sub/run.sh"}));

    fs::create_directories(root + "/out");
    ASSERT_EQ(::lseek(packed->fd.get(), 0, SEEK_SET), 0);
    auto unpacked = unpack_into(packed->fd.get(), root + "/out", "src");  // the "src/" prefix dropped
    ASSERT_TRUE(unpacked.ok()) << unpacked.error().to_string();
    EXPECT_EQ(slurp(root + "/out/a.txt"), "alpha\n");
    EXPECT_EQ(fs::read_symlink(root + "/out/link"), "a.txt");
    struct stat st;
    ASSERT_EQ(::stat((root + "/out/sub/run.sh").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
    fs::remove_all(root);
}

TEST(CliTar, UnpackRefusesEveryWayOut) {
    std::string root = temp_dir();
    std::string outside = root + "/outside";
    fs::create_directories(outside);
    struct Case {
        const char* what;
        std::vector<TarEntry> entries;
    };
    std::vector<Case> cases = {
        {"dotdot", {{"ok.txt", AE_IFREG, "x"}, {"../escaped.txt", AE_IFREG, "x"}}},
        {"nested dotdot", {{"a/../../escaped.txt", AE_IFREG, "x"}}},
        {"absolute", {{outside + "/escaped.txt", AE_IFREG, "x"}}},
        {"through a symlink", {{"l", AE_IFLNK, "", outside}, {"l/escaped.txt", AE_IFREG, "x"}}},
        {"onto a symlink", {{"l", AE_IFLNK, "", outside + "/escaped.txt"}, {"l", AE_IFREG, "x"}}},
        {"hard link", {{"h", 0, "", "/etc/passwd"}}},
        {"fifo", {{"f", AE_IFIFO}}},
        {"device", {{"d", AE_IFCHR}}},
    };
    for (const auto& c : cases) {
        std::string dest = root + "/dest-" + std::to_string(&c - cases.data());
        fs::create_directories(dest);
        UniqueFd tar = make_tar(c.entries);
        auto r = unpack_into(tar.get(), dest);
        // Writing onto a symlink may replace the link instead; either way nothing gets out.
        if (std::string(c.what) != "onto a symlink") {
            EXPECT_FALSE(r.ok()) << c.what << " was extracted";
        }
        EXPECT_FALSE(fs::exists(outside + "/escaped.txt")) << c.what << " escaped";
        EXPECT_FALSE(fs::exists(root + "/escaped.txt")) << c.what << " escaped";
        char cwd[4096];
        ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
        EXPECT_NE(std::string(cwd), dest) << "unpack_into left the working directory in " << dest;
    }
    fs::remove_all(root);
}

TEST(CliTar, UnpackKeepsOnlyPermissionBitsAndNoOwners) {
    // What `kiln sandbox cp sb:/dir .` gets from a hostile guest: a root-owned setuid program,
    // a setgid folder, a sticky world-writable folder, and a file owned by someone else.
    std::string dest = temp_dir();
    UniqueFd tar = make_tar({{"suid", AE_IFREG, "#!/bin/sh\n", "", 04755, 0},
                             {"sgid-dir", AE_IFDIR, "", "", 02775, 0},
                             {"sgid-dir/tool", AE_IFREG, "x", "", 06711, 0},
                             {"sticky", AE_IFDIR, "", "", 01777, 0},
                             {"theirs", AE_IFREG, "x", "", 0640, 4242}});
    auto r = unpack_into(tar.get(), dest);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(*r, 5u);
    struct Expect {
        const char* name;
        mode_t perm;
    };
    for (const Expect& e : {Expect{"suid", 0755}, Expect{"sgid-dir", 0775}, Expect{"sgid-dir/tool", 0711},
                            Expect{"sticky", 0777}, Expect{"theirs", 0640}}) {
        struct stat st;
        ASSERT_EQ(::lstat((dest + "/" + e.name).c_str(), &st), 0) << e.name;
        EXPECT_EQ(st.st_mode & 07777, e.perm) << e.name << " has mode 0" << std::oct << (st.st_mode & 07777);
        EXPECT_EQ(st.st_uid, ::geteuid()) << e.name;  // whoever extracts owns it
        EXPECT_EQ(st.st_gid, ::getegid()) << e.name;
    }
    fs::remove_all(dest);
}

TEST(CliTar, DamagedTarIsAnErrorNotACrash) {
    UniqueFd fd(::open("/tmp", O_TMPFILE | O_RDWR, 0600));
    std::string junk(3000, '\x7f');
    ASSERT_EQ(::write(fd.get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    ::lseek(fd.get(), 0, SEEK_SET);
    std::string dest = temp_dir();
    EXPECT_FALSE(unpack_into(fd.get(), dest).ok());
    fs::remove_all(dest);
}

TEST(CliApiPaths, SandboxIdsStayOneSegmentAndQueriesAreEncoded) {
    EXPECT_EQ(*sandbox_path("sb-0123456789ab"), "/v1/sandboxes/sb-0123456789ab");
    for (const char* bad : {"", "..", "sb/../x", "a?b", "a b", "a%2f"}) EXPECT_FALSE(sandbox_path(bad).ok()) << bad;
    EXPECT_EQ(url_encode("/work/a b&c=d%"), "/work/a%20b%26c%3Dd%25");
    EXPECT_EQ(url_encode("\xc3\xa9"), "%C3%A9");
}
