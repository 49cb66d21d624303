#include "rpc/tls.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace serve::rpc {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

struct KeyPair {
  std::string key_pem;        // unencrypted
  std::string encrypted_pem;  // encrypted with "secret"
  std::string cert_pem;       // self-signed
};

std::string ToPem(const std::function<int(BIO*)>& write) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(write(bio), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

KeyPair MakeKeyPair() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  KeyPair kp;
  kp.key_pem = ToPem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  kp.encrypted_pem = ToPem([&](BIO* b) {
    return PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), nullptr, 0, nullptr,
                                         const_cast<char*>("secret"));
  });
  kp.cert_pem = ToPem([&](BIO* b) { return PEM_write_bio_X509(b, cert); });
  X509_free(cert);
  EVP_PKEY_free(key);
  return kp;
}

class TlsMaterialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tls_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::string Error(const TlsFiles& files) {
    auto m = LoadTlsMaterial(files);
    EXPECT_FALSE(m.ok());
    return m.ok() ? "" : std::string(m.status().message());
  }
  fs::path dir_;
};

TEST_F(TlsMaterialTest, GoodFilesLoadAndMakeAContext) {
  KeyPair kp = MakeKeyPair();
  TlsFiles files{Write("key.pem", kp.key_pem), Write("cert.pem", kp.cert_pem), "",
                 Write("ca.pem", kp.cert_pem)};
  auto m = LoadTlsMaterial(files);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->cert_chain_pem, kp.cert_pem);
  EXPECT_EQ(m->ca_certs_pem, kp.cert_pem);
  EXPECT_THAT(m->private_key_pem, HasSubstr("BEGIN PRIVATE KEY"));
  EXPECT_NE(MakeServerSslContext(*m), nullptr);
}

TEST_F(TlsMaterialTest, EncryptedKeyNeedsItsPassword) {
  KeyPair kp = MakeKeyPair();
  TlsFiles files{Write("key.pem", kp.encrypted_pem), Write("cert.pem", kp.cert_pem), "", ""};
  EXPECT_THAT(Error(files), HasSubstr("is encrypted: give its ssl_keyfile_password"));
  files.keyfile_password = "wrong";
  EXPECT_THAT(Error(files), HasSubstr("cannot be decrypted with ssl_keyfile_password"));
  files.keyfile_password = "secret";
  auto m = LoadTlsMaterial(files);
  ASSERT_TRUE(m.ok()) << m.status();
  // The key is handed on decrypted (gRPC takes no password).
  EXPECT_THAT(m->private_key_pem, HasSubstr("BEGIN PRIVATE KEY"));
}

TEST_F(TlsMaterialTest, ErrorsNameTheFieldAndFile) {
  KeyPair kp = MakeKeyPair();
  KeyPair other = MakeKeyPair();
  std::string key = Write("key.pem", kp.key_pem), cert = Write("cert.pem", kp.cert_pem);
  std::string missing = (dir_ / "missing.pem").string();
  EXPECT_THAT(Error({"", cert, "", ""}),
              HasSubstr("ssl_certfile: ssl_keyfile and ssl_certfile must be given together"));
  EXPECT_THAT(Error({key, "", "", ""}), HasSubstr("ssl_keyfile: ssl_keyfile and ssl_certfile"));
  EXPECT_THAT(Error({key, missing, "", ""}),
              HasSubstr("ssl_certfile '" + missing + "' cannot be read: No such file"));
  EXPECT_THAT(Error({missing, cert, "", ""}), HasSubstr("ssl_keyfile '" + missing + "'"));
  EXPECT_THAT(Error({key, key, "", ""}), HasSubstr("ssl_certfile '" + key + "' holds no PEM"));
  EXPECT_THAT(Error({cert, cert, "", ""}), HasSubstr("ssl_keyfile '" + cert + "' holds no PEM"));
  EXPECT_THAT(Error({Write("other.pem", other.key_pem), cert, "", ""}),
              HasSubstr("does not match the certificate in ssl_certfile"));
  EXPECT_THAT(Error({key, cert, "", Write("junk.pem", "junk")}),
              HasSubstr("ssl_ca_certs '"));
  EXPECT_THAT(Error({key, cert, "", missing}), HasSubstr("ssl_ca_certs '" + missing + "'"));
}

}  // namespace
}  // namespace serve::rpc
