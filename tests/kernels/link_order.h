// What link_order_base.cc exports to link_order_user.cc: functions and an exception type that
// both sides see.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

extern "C" int helper(int value);
extern "C" void throw_base_error(int code);

/// Thrown by the base library, caught by the user library: defined inline, so each library has
/// its own copy of the type's typeinfo (matched by name, as across shared libraries).
struct BaseError : std::exception {
  explicit BaseError(int code) : code(code) {}
  const char* what() const noexcept override { return "BaseError"; }
  int code;
};

/// Logs its construction and destruction to the file named by ORCJIT_TEST_EVENT_LOG (read when it
/// is constructed), so that tests see which library initialized and closed first.
struct LoggedLifetime {
  explicit LoggedLifetime(const char* name) : name(name) {
    if (const char* log = std::getenv("ORCJIT_TEST_EVENT_LOG")) {
      std::snprintf(path, sizeof(path), "%s", log);
    }
    Log("");
  }
  ~LoggedLifetime() { Log("~"); }
  void Log(const char* prefix) const {
    if (path[0] == '\0') return;
    if (FILE* file = std::fopen(path, "a")) {
      std::fprintf(file, "%s%s\n", prefix, name);
      std::fclose(file);
    }
  }
  const char* name;
  char path[4096] = {};
};
