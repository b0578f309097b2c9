// Golden-file and refusal tests for the snapshot manifest (docs/snapshot-format.md).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "vm/snapshot_manifest.h"

using namespace kiln::vm;
using kiln::ErrorCode;

namespace {

const std::string kGolden = std::string(KILN_SOURCE_DIR) + "/tests/unit/golden/snapshot_manifest_v1.json";

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

SnapshotManifest sample() {
    SnapshotManifest m;
    m.id = "snap-0123456789abcdef";
    m.parent_id = "";
    m.created_unix_ms = 1795000000000;
    m.kernel_release = "6.1.192-kiln";
    m.kernel_sha256 = std::string(64, 'a');
    m.image_name = "tiny";
    m.image_key = "0011223344556677";
    m.vcpus = 1;
    m.memory_mib = 256;
    m.accel = "tcg";
    m.qemu_version = "7.2.22";
    m.state = {51234, std::string(64, 'b')};
    m.memory = {256ull << 20, std::string(64, 'c')};
    m.disk = {256ull << 20, std::string(64, 'd')};
    return m;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    auto pos = s.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    if (pos != std::string::npos) s.replace(pos, from.size(), to);
    return s;
}

}  // namespace

TEST(SnapshotManifest, SerialisationMatchesTheGoldenFile) {
    // The format is a contract: a change here is a format version bump, not a test update.
    EXPECT_EQ(serialize_manifest(sample()), slurp(kGolden));
}

TEST(SnapshotManifest, GoldenFileParsesBackToTheSameManifest) {
    auto parsed = parse_manifest(slurp(kGolden));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(serialize_manifest(*parsed), slurp(kGolden));
    EXPECT_EQ(parsed->kernel_release, "6.1.192-kiln");
    EXPECT_EQ(parsed->memory.size, 256ull << 20);
}

TEST(SnapshotManifest, AnotherFormatVersionIsRefusedAsIncompatible) {
    auto text = replace(slurp(kGolden), "\"format_version\": 1", "\"format_version\": 2");
    auto parsed = parse_manifest(text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error().code, ErrorCode::SnapshotIncompatible);
    EXPECT_NE(parsed.error().message.find("version 2"), std::string::npos);
}

TEST(SnapshotManifest, AnEditedFieldFailsTheChecksum) {
    auto parsed = parse_manifest(replace(slurp(kGolden), "\"vcpus\": 1", "\"vcpus\": 2"));
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error().code, ErrorCode::SnapshotDamaged);
    EXPECT_NE(parsed.error().message.find("checksum"), std::string::npos);
}

TEST(SnapshotManifest, GarbageAndWrongMagicAreRefused) {
    EXPECT_FALSE(parse_manifest("").ok());
    EXPECT_FALSE(parse_manifest("{not json").ok());
    EXPECT_FALSE(parse_manifest(replace(slurp(kGolden), "kiln-snapshot", "other")).ok());
    EXPECT_FALSE(parse_manifest(std::string(100000, ' ')).ok());
    // A magic of the wrong type is refused, not thrown (the fuzzer's find).
    for (const char* magic : {"33333333333333333333333333333333300000", "null", "[]", "{}"}) {
        auto parsed = parse_manifest(std::string("{\"magic\": ") + magic + "}");
        ASSERT_FALSE(parsed.ok());
        EXPECT_NE(parsed.error().message.find("bad magic"), std::string::npos) << parsed.error().message;
    }
}

TEST(SnapshotManifest, CompatibilityNamesWhatDiffers) {
    auto m = sample();
    EXPECT_TRUE(check_compatible(m, {"tcg", "7.2.22"}).ok());
    auto accel = check_compatible(m, {"kvm", "7.2.22"});
    ASSERT_FALSE(accel.ok());
    EXPECT_NE(accel.error().message.find("kvm"), std::string::npos);
    auto qemu = check_compatible(m, {"tcg", "8.2.0"});
    ASSERT_FALSE(qemu.ok());
    EXPECT_NE(qemu.error().message.find("8.2.0"), std::string::npos);
}
