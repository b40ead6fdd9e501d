/* Defines getpid, which the process (libc) defines too: inside a library that
 * holds this object, the library's definition must be the one that is used. */
int getpid(void) { return 4242; }
