#include "fsutil.hpp"

#include <cerrno>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace.hpp"

namespace pask {

bool write_file_atomic(const std::string &path, const std::string &data) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(this_thread_tid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n <= 0) {
            ::close(fd);
            ::unlink(tmp.c_str());
            return false;
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        ::unlink(tmp.c_str());
        return false;
    }
    if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

std::optional<std::string> read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return std::nullopt;
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return std::nullopt;
    return ss.str();
}

bool make_private_dir(const std::string &dir) {
    if (dir.empty()) return false;
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
    auto slash = dir.rfind('/');
    if (slash != std::string::npos && slash > 0) make_private_dir(dir.substr(0, slash));
    return ::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST;
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

}  // namespace pask
