/* A shared library whose data symbols lie far apart: reach_low in .data, then in .bss (address
 * space, never touched) a 2.5 GiB array, reach_high, a 2 GiB array and reach_far. No memory is
 * within 2 GiB of both reach_low and reach_far; what is within 2 GiB of both reach_low and
 * reach_high is this library's own .bss. */
int reach_low = 1;
char reach_gap_1[5UL << 29];
int reach_high;
char reach_gap_2[1UL << 31];
int reach_far;
