#include "fsutil.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace pask {

namespace {

// 16 hex digits nobody can predict: a planted link must be made before the
// name is known, and O_EXCL refuses one made at the name in the meantime.
std::string random_suffix() {
    unsigned char bytes[8];
    ssize_t got = ::getrandom(bytes, sizeof bytes, GRND_NONBLOCK);
    if (got != static_cast<ssize_t>(sizeof bytes)) {
        std::random_device rd;  // getrandom unavailable or not yet seeded
        for (auto &b : bytes) b = static_cast<unsigned char>(rd());
    }
    char hex[sizeof bytes * 2 + 1];
    for (size_t i = 0; i < sizeof bytes; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
    return hex;
}

bool write_all(int fd, const std::string &data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

}  // namespace

bool write_file_atomic(const std::string &path, const std::string &data) {
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
        tmp = path + ".tmp." + random_suffix();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) return false;
    }
    if (fd < 0) return false;
    const bool ok = write_all(fd, data) && ::fsync(fd) == 0;
    if (::close(fd) != 0 || !ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

std::optional<std::string> read_file(const std::string &path, size_t max_bytes, std::string *why) {
    auto refuse = [&](const std::string &reason) -> std::optional<std::string> {
        if (why) *why = path + " " + reason;
        return std::nullopt;
    };
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return refuse(errno == ENOENT ? "does not exist" : std::string("cannot be opened: ") + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        return refuse("cannot be examined");
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        return refuse("is a folder, not a file");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return refuse("is not a regular file (a FIFO, socket or device)");
    }
    if (static_cast<unsigned long long>(st.st_size) > max_bytes) {
        ::close(fd);
        return refuse("is " + std::to_string(st.st_size) + " bytes, over the limit of " + std::to_string(max_bytes));
    }
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t off = 0;
    for (;;) {
        if (off == out.size()) {
            if (out.size() > max_bytes) break;
            out.resize(std::min(max_bytes + 1, out.size() + 65536));  // the file grew while read
        }
        ssize_t n = ::read(fd, &out[off], out.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            return refuse(std::string("cannot be read: ") + std::strerror(errno));
        }
        if (n == 0) break;
        off += static_cast<size_t>(n);
    }
    ::close(fd);
    if (off > max_bytes) return refuse("grew over the limit of " + std::to_string(max_bytes) + " bytes while read");
    out.resize(off);
    return out;
}

bool make_private_dir(const std::string &dir) {
    if (dir.empty() || dir.size() > kMaxPathBytes) return false;
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
    // Parents first, left to right: one mkdir per missing component.
    for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1)) {
        const std::string parent = dir.substr(0, slash);
        if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) return false;
    }
    return ::mkdir(dir.c_str(), 0700) == 0 || (errno == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
}

bool dir_is_private(const std::string &dir, std::string *why) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (why) *why = dir + " is not a folder";
        return false;
    }
    if (st.st_uid != ::geteuid()) {
        if (why) *why = dir + " is not owned by this user";
        return false;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        if (why) *why = dir + " is writable by other users";
        return false;
    }
    return true;
}

int sweep_stale_temporaries(const std::string &dir, double max_age_s) {
    DIR *d = ::opendir(dir.c_str());
    if (!d) return 0;
    const int dfd = ::dirfd(d);
    const double now = static_cast<double>(std::time(nullptr));
    int removed = 0;
    while (struct dirent *e = ::readdir(d)) {
        if (std::strstr(e->d_name, ".tmp.") == nullptr) continue;
        struct stat st;
        if (::fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != ::geteuid() || now - static_cast<double>(st.st_mtime) < max_age_s)
            continue;
        if (::unlinkat(dfd, e->d_name, 0) == 0) ++removed;
    }
    ::closedir(d);
    return removed;
}

}  // namespace pask
