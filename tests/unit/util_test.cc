// Unit tests of src/common/util helpers.

#include <cctype>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "common/util.h"

namespace serve {
namespace {

TEST(RandomUuid, IsAVersion4UuidInCanonicalForm) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    std::string u = RandomUuid();
    ASSERT_EQ(u.size(), 36u) << u;
    for (size_t k = 0; k < u.size(); ++k) {
      if (k == 8 || k == 13 || k == 18 || k == 23) {
        EXPECT_EQ(u[k], '-') << u;
      } else {
        EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(u[k])) &&
                    !std::isupper(static_cast<unsigned char>(u[k])))
            << u;
      }
    }
    EXPECT_EQ(u[14], '4') << u;                                 // version
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos) << u;  // variant
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 200u);
}

}  // namespace
}  // namespace serve
