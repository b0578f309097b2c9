// The fleet's request signatures (daemon/fleet/fleet_signature.h): what verifies and what does not.
#include <gtest/gtest.h>

#include "base/sha256.h"
#include "daemon/fleet/fleet_signature.h"

using namespace kiln;
using namespace kiln::daemon::fleet;

namespace {

constexpr int64_t kNow = 1'800'000'000'000;
const std::string kSecret = "fleet-secret-for-tests-0123456789";
const std::string kEmptyBody = sha256_hex("");

FleetHeaders signed_headers(const std::string& secret, const FleetClaim& claim, const std::string& method,
                            const std::string& target) {
    return FleetHeaders{claim.host, std::to_string(claim.time_ms), std::to_string(claim.token_id), claim.body_sha256,
                        fleet_signature(secret, claim, method, target)};
}

}  // namespace

TEST(FleetSignature, AGoodSignatureVerifiesAndNamesTheToken) {
    FleetClaim claim{"host-a", kNow, 7, kEmptyBody};
    auto h = signed_headers(kSecret, claim, "POST", "/v1/sandboxes/sb-0123456789ab/exec?stream=ndjson");
    EXPECT_EQ(h.signature->size(), 64u);
    auto got = verify_fleet_request(kSecret, h, "POST", "/v1/sandboxes/sb-0123456789ab/exec?stream=ndjson", kNow + 1000);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->token_id, 7);
    EXPECT_EQ(got->host, "host-a");
}

TEST(FleetSignature, EveryFieldIsBound) {
    const std::string target = "/v1/sandboxes/sb-0123456789ab";
    FleetClaim claim{"host-a", kNow, 7, kEmptyBody};
    auto h = signed_headers(kSecret, claim, "GET", target);
    // Another method, target, token, host or time than the one signed: refused.
    EXPECT_FALSE(verify_fleet_request(kSecret, h, "DELETE", target, kNow).ok());
    EXPECT_FALSE(verify_fleet_request(kSecret, h, "GET", target + "/files?path=/etc/shadow", kNow).ok());
    auto other_token = h;
    other_token.token = "1";  // posing as the admin token
    EXPECT_FALSE(verify_fleet_request(kSecret, other_token, "GET", target, kNow).ok());
    auto other_host = h;
    other_host.host = "host-b";
    EXPECT_FALSE(verify_fleet_request(kSecret, other_host, "GET", target, kNow).ok());
    auto other_body = h;
    other_body.body = sha256_hex("rm -rf /");  // a body swapped on the way
    EXPECT_FALSE(verify_fleet_request(kSecret, other_body, "GET", target, kNow).ok());
    auto other_time = h;
    other_time.time = std::to_string(kNow + 1);
    EXPECT_FALSE(verify_fleet_request(kSecret, other_time, "GET", target, kNow).ok());
    // Another secret: refused, with the reason.
    auto forged = signed_headers("not-the-secret", claim, "GET", target);
    auto refused = verify_fleet_request(kSecret, forged, "GET", target, kNow);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::Unauthorized);
    EXPECT_NE(refused.error().message.find("bad signature"), std::string::npos);
}

TEST(FleetSignature, TheClockWindowBoundsReplays) {
    FleetClaim old{"host-a", kNow - kFleetClockWindowMs - 1, 7, kEmptyBody};
    auto h = signed_headers(kSecret, old, "GET", "/v1/sandboxes/x");
    auto refused = verify_fleet_request(kSecret, h, "GET", "/v1/sandboxes/x", kNow);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find("clock window"), std::string::npos);
    FleetClaim future{"host-a", kNow + kFleetClockWindowMs + 1, 7, kEmptyBody};
    EXPECT_FALSE(verify_fleet_request(kSecret, signed_headers(kSecret, future, "GET", "/x"), "GET", "/x", kNow).ok());
    FleetClaim edge{"host-a", kNow - kFleetClockWindowMs, 7, kEmptyBody};
    EXPECT_TRUE(verify_fleet_request(kSecret, signed_headers(kSecret, edge, "GET", "/x"), "GET", "/x", kNow).ok());
}

TEST(FleetSignature, MissingOrMalformedHeadersAndNoSecretAreRefused) {
    FleetClaim claim{"host-a", kNow, 7, kEmptyBody};
    auto h = signed_headers(kSecret, claim, "GET", "/x");
    for (int i = 0; i < 5; ++i) {
        auto missing = h;
        (i == 0 ? missing.host : i == 1 ? missing.time : i == 2 ? missing.token : i == 3 ? missing.body : missing.signature).reset();
        EXPECT_TRUE(missing.any());
        EXPECT_FALSE(verify_fleet_request(kSecret, missing, "GET", "/x", kNow).ok()) << i;
    }
    auto bad_time = h;
    bad_time.time = "12abc";
    EXPECT_FALSE(verify_fleet_request(kSecret, bad_time, "GET", "/x", kNow).ok());
    auto zero_token = h;
    zero_token.token = "0";
    EXPECT_FALSE(verify_fleet_request(kSecret, zero_token, "GET", "/x", kNow).ok());
    auto bad_body = h;
    bad_body.body = "not-a-hash";
    EXPECT_FALSE(verify_fleet_request(kSecret, bad_body, "GET", "/x", kNow).ok());
    auto short_signature = h;
    short_signature.signature = h.signature->substr(0, 63);
    EXPECT_FALSE(verify_fleet_request(kSecret, short_signature, "GET", "/x", kNow).ok());
    // A host without a fleet secret accepts nothing, not even a request "signed" with the empty one.
    auto empty = signed_headers("", claim, "GET", "/x");
    EXPECT_FALSE(verify_fleet_request("", empty, "GET", "/x", kNow).ok());
    EXPECT_FALSE(FleetHeaders{}.any());
}
