/* atexit, at_quick_exit and pthread_atfork from a plain C object. glibc defines these three only in
 * libc_nonshared.a (a program gets them linked in statically), so no shared library exports them:
 * the core binds them to the library itself (csrc/libc_nonshared.h).
 *
 * Every handler appends one line to the file named by ORCJIT_TEST_EVENT_LOG, read when the library
 * is linked (a static constructor), so that handlers still find it after the variable is gone.
 * Registered at load: atexit "exit_first", then "exit_second"; at_quick_exit "quick"; and
 * pthread_atfork "prepare", "parent", "child". The export register_exit registers one more atexit
 * handler, "exit_late", from a call. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tvm/ffi/c_api.h>

static char log_path[4096];

static void Log(const char* event) {
  if (log_path[0] == '\0') return;
  FILE* file = fopen(log_path, "a");
  if (file == NULL) return;
  fprintf(file, "%s\n", event);
  fclose(file);
}

static void ExitFirst(void) { Log("exit_first"); }
static void ExitSecond(void) { Log("exit_second"); }
static void ExitLate(void) { Log("exit_late"); }
static void Quick(void) { Log("quick"); }
static void Prepare(void) { Log("prepare"); }
static void Parent(void) { Log("parent"); }
static void Child(void) { Log("child"); }

static int registered;

__attribute__((constructor)) static void Register(void) {
  const char* path = getenv("ORCJIT_TEST_EVENT_LOG");
  if (path != NULL) strncpy(log_path, path, sizeof(log_path) - 1);
  registered = atexit(ExitFirst) == 0;
  registered += atexit(ExitSecond) == 0;
  registered += at_quick_exit(Quick) == 0;
  registered += pthread_atfork(Prepare, Parent, Child) == 0;
}

/* How many of the four registrations above succeeded. */
int __tvm_ffi_registered(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = registered;
  return 0;
}

int __tvm_ffi_register_exit(void* self, const TVMFFIAny* args, int32_t num_args,
                            TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = atexit(ExitLate);
  return 0;
}
