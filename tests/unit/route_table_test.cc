// Unit tests of the proxy's longest-prefix route table (spec §8.2).

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proxy/route_table.h"

namespace serve::proxy {
namespace {

// App name matched by `path`, or "<none>".
std::string AppFor(const RouteTable& table, std::string_view path) {
  const Route* r = table.Match(path);
  return r ? r->app_name : "<none>";
}

TEST(RouteTableTest, EmptyTableMatchesNothing) {
  RouteTable table;
  EXPECT_EQ(table.Match("/"), nullptr);
  EXPECT_EQ(table.Match("/a"), nullptr);
  EXPECT_EQ(RouteTable(std::vector<Route>{}).Match("/x"), nullptr);
}

TEST(RouteTableTest, PrefixMatchesOnPathSegmentBoundary) {
  RouteTable table({{"/a", "app_a", "A"}});
  EXPECT_EQ(AppFor(table, "/a"), "app_a");
  EXPECT_EQ(AppFor(table, "/a/"), "app_a");
  EXPECT_EQ(AppFor(table, "/a/c"), "app_a");
  EXPECT_EQ(AppFor(table, "/a/c/d"), "app_a");
  EXPECT_EQ(AppFor(table, "/ab"), "<none>");
  EXPECT_EQ(AppFor(table, "/"), "<none>");
  EXPECT_EQ(AppFor(table, "/b/a"), "<none>");
  EXPECT_EQ(AppFor(table, ""), "<none>");
}

TEST(RouteTableTest, RootMatchesEverything) {
  RouteTable table({{"/", "root", "Ingress"}});
  for (const char* path : {"/", "/a", "/ab/c", "/-/x", "//"}) {
    const Route* r = table.Match(path);
    ASSERT_NE(r, nullptr) << path;
    EXPECT_EQ(r->app_name, "root") << path;
    EXPECT_EQ(r->route_prefix, "/") << path;
    EXPECT_EQ(r->deployment, "Ingress") << path;
  }
}

TEST(RouteTableTest, LongestPrefixWinsRegardlessOfInsertionOrder) {
  std::vector<Route> routes = {
      {"/", "root", "R"}, {"/a", "a", "A"}, {"/a/b", "ab", "AB"}, {"/abc", "abc", "ABC"}};
  for (int order = 0; order < 2; ++order) {
    RouteTable table(routes);
    EXPECT_EQ(AppFor(table, "/a/b/c"), "ab");
    EXPECT_EQ(AppFor(table, "/a/b"), "ab");
    EXPECT_EQ(AppFor(table, "/a/bc"), "a");
    EXPECT_EQ(AppFor(table, "/a"), "a");
    EXPECT_EQ(AppFor(table, "/abc/d"), "abc");
    EXPECT_EQ(AppFor(table, "/ab"), "root");
    EXPECT_EQ(AppFor(table, "/z"), "root");
    std::reverse(routes.begin(), routes.end());
  }
}

TEST(RouteTableTest, RoutesAreKeptSortedByDecreasingLength) {
  RouteTable table({{"/", "root", "R"}, {"/a/b", "ab", "AB"}, {"/a", "a", "A"}});
  ASSERT_EQ(table.routes().size(), 3u);
  EXPECT_EQ(table.routes()[0].route_prefix, "/a/b");
  EXPECT_EQ(table.routes()[1].route_prefix, "/a");
  EXPECT_EQ(table.routes()[2].route_prefix, "/");
}

TEST(RouteTableTest, PrefixWithTrailingSlashMatchesItsChildren) {
  RouteTable table({{"/api/", "api", "Api"}});
  EXPECT_EQ(AppFor(table, "/api/"), "api");
  EXPECT_EQ(AppFor(table, "/api/v1"), "api");
  EXPECT_EQ(AppFor(table, "/apix"), "<none>");
}

TEST(RouteTableTest, MatchReturnsTheWholeRoute) {
  RouteTable table({{"/x", "app_x", "XIngress"}});
  const Route* r = table.Match("/x/y");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->route_prefix, "/x");
  EXPECT_EQ(r->app_name, "app_x");
  EXPECT_EQ(r->deployment, "XIngress");
}

}  // namespace
}  // namespace serve::proxy
