// Serialising, parsing and verifying snapshot manifests; every refusal says what is wrong.
#include "vm/snapshot_manifest.h"

#include <sys/stat.h>

#include "base/file_util.h"
#include "base/sha256.h"

namespace kiln::vm {
namespace {

using nlohmann::ordered_json;

Error damaged(const std::string& message) { return make_error(ErrorCode::SnapshotDamaged, message); }
Error incompatible(const std::string& message) { return make_error(ErrorCode::SnapshotIncompatible, message); }

ordered_json file_json(const SnapshotFileInfo& f) { return ordered_json{{"size", f.size}, {"sha256", f.sha256}}; }

ordered_json body_json(const SnapshotManifest& m) {
    ordered_json body{
        {"magic", kSnapshotMagic},
        {"format_version", kSnapshotFormatVersion},
        {"id", m.id},
        {"parent_id", m.parent_id},
        {"created_unix_ms", m.created_unix_ms},
        {"kernel", {{"release", m.kernel_release}, {"sha256", m.kernel_sha256}}},
        {"image", {{"name", m.image_name}, {"key", m.image_key}}},
        {"vcpus", m.vcpus},
        {"memory_mib", m.memory_mib},
        {"accel", m.accel},
        {"qemu_version", m.qemu_version},
        {"machine", m.machine},
        {"files", {{kStateFileName, file_json(m.state)}, {kMemoryFileName, file_json(m.memory)}, {kDiskFileName, file_json(m.disk)}}},
    };
    // Optional and only when true, so manifests without a NIC keep their exact bytes and checksum.
    if (m.nic) body["nic"] = true;
    return body;
}

template <typename T>
Status get_field(const nlohmann::json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it == j.end()) return damaged(std::string("manifest lacks '") + key + "'");
    try {
        out = it->get<T>();
    } catch (const nlohmann::json::exception&) {
        return damaged(std::string("manifest field '") + key + "' has the wrong type");
    }
    return ok_status();
}

Status get_file(const nlohmann::json& files, const char* name, SnapshotFileInfo& out) {
    auto it = files.find(name);
    if (it == files.end() || !it->is_object()) return damaged(std::string("manifest lacks files.") + name);
    TRY(get_field(*it, "size", out.size));
    TRY(get_field(*it, "sha256", out.sha256));
    return ok_status();
}

Status check_file(const std::string& dir, const char* name, const SnapshotFileInfo& info, bool hash) {
    std::string path = dir + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return damaged("snapshot file " + path + " is missing");
    if (static_cast<uint64_t>(st.st_size) != info.size)
        return damaged("snapshot file " + path + " has " + std::to_string(st.st_size) + " bytes, the manifest says " +
                       std::to_string(info.size) + " (truncated or replaced)");
    if (hash) {
        auto sum = TRY(sha256_file_hex(path));
        if (sum != info.sha256) return damaged("snapshot file " + path + " fails its SHA-256 check");
    }
    return ok_status();
}

}  // namespace

std::string serialize_manifest(const SnapshotManifest& manifest) {
    ordered_json body = body_json(manifest);
    std::string checksum = sha256_hex(body.dump());
    body["manifest_sha256"] = checksum;
    return body.dump(2) + "\n";
}

Result<SnapshotManifest> parse_manifest(const std::string& text) {
    if (text.size() > kMaxManifestBytes) return damaged("manifest is larger than 64 KiB");
    ordered_json j = ordered_json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return damaged("manifest is not a JSON object");
    // Not j.value("magic", ""): it throws when "magic" is there but not a string (a fuzzer's find).
    auto magic = j.find("magic");
    if (magic == j.end() || !magic->is_string() || magic->get<std::string>() != kSnapshotMagic)
        return damaged("not a Kiln snapshot (bad magic)");
    auto version = j.find("format_version");
    if (version == j.end() || !version->is_number_integer()) return damaged("manifest lacks format_version");
    if (version->get<int64_t>() != kSnapshotFormatVersion)
        return incompatible("snapshot format version " + std::to_string(version->get<int64_t>()) +
                            " is not supported (this Kiln reads version " + std::to_string(kSnapshotFormatVersion) + ")");
    auto sum_it = j.find("manifest_sha256");
    if (sum_it == j.end() || !sum_it->is_string()) return damaged("manifest lacks manifest_sha256");
    std::string recorded = sum_it->get<std::string>();
    j.erase("manifest_sha256");
    if (sha256_hex(j.dump()) != recorded) return damaged("manifest fails its checksum (edited or corrupted)");

    SnapshotManifest m;
    TRY(get_field(j, "id", m.id));
    TRY(get_field(j, "parent_id", m.parent_id));
    TRY(get_field(j, "created_unix_ms", m.created_unix_ms));
    auto kernel = j.find("kernel");
    auto image = j.find("image");
    auto files = j.find("files");
    if (kernel == j.end() || image == j.end() || files == j.end() || !kernel->is_object() || !image->is_object() ||
        !files->is_object())
        return damaged("manifest lacks kernel, image or files");
    TRY(get_field(*kernel, "release", m.kernel_release));
    TRY(get_field(*kernel, "sha256", m.kernel_sha256));
    TRY(get_field(*image, "name", m.image_name));
    TRY(get_field(*image, "key", m.image_key));
    TRY(get_field(j, "vcpus", m.vcpus));
    TRY(get_field(j, "memory_mib", m.memory_mib));
    TRY(get_field(j, "accel", m.accel));
    TRY(get_field(j, "qemu_version", m.qemu_version));
    TRY(get_field(j, "machine", m.machine));
    if (auto nic = j.find("nic"); nic != j.end()) {
        if (!nic->is_boolean()) return damaged("manifest field 'nic' has the wrong type");
        m.nic = nic->get<bool>();
    }
    TRY(get_file(*files, kStateFileName, m.state));
    TRY(get_file(*files, kMemoryFileName, m.memory));
    TRY(get_file(*files, kDiskFileName, m.disk));
    if (m.vcpus == 0 || m.vcpus > 64) return damaged("manifest vcpus out of range");
    if (m.memory_mib < 16 || m.memory_mib > 256 * 1024) return damaged("manifest memory_mib out of range");
    if (m.memory.size != uint64_t(m.memory_mib) << 20) return damaged("memory file size does not match memory_mib");
    if (m.state.size == 0 || m.state.size > kMaxStateBytes) return damaged("device state size out of range");
    return m;
}

Status check_compatible(const SnapshotManifest& m, const SnapshotHost& host) {
    if (m.accel != host.accel)
        return incompatible("snapshot was taken under " + m.accel + " but this host runs " + host.accel +
                            "; device state does not move between accelerators");
    if (m.qemu_version != host.qemu_version)
        return incompatible("snapshot was taken with QEMU " + m.qemu_version + " but this host has QEMU " +
                            host.qemu_version + "; re-create the snapshot");
    if (m.machine != "microvm") return incompatible("snapshot machine type '" + m.machine + "' is not microvm");
    return ok_status();
}

Result<SnapshotManifest> load_and_verify(const std::string& dir, VerifyLevel level) {
    std::string path = dir + "/" + kManifestFileName;
    if (!path_exists(path)) return damaged("no snapshot manifest at " + path);
    auto text = read_file(path, kMaxManifestBytes + 1);
    if (!text.ok()) return damaged("cannot read " + path + ": " + text.error().message);
    auto manifest = TRY(parse_manifest(*text));
    TRY(check_file(dir, kStateFileName, manifest.state, /*hash=*/true));
    bool full = level == VerifyLevel::Checksums;
    TRY(check_file(dir, kMemoryFileName, manifest.memory, full));
    TRY(check_file(dir, kDiskFileName, manifest.disk, full));
    return manifest;
}

Result<SnapshotFileInfo> describe_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return make_error(ErrorCode::IoError, "cannot stat " + path);
    SnapshotFileInfo info;
    info.size = static_cast<uint64_t>(st.st_size);
    info.sha256 = TRY(sha256_file_hex(path));
    return info;
}

}  // namespace kiln::vm
