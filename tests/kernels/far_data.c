/* A shared library whose two data symbols lie more than 2 GiB apart: reach_low in .data, then a
 * 2.5 GiB .bss array (address space, never touched), then reach_high. No library can be placed
 * within 32-bit reach of both. */
int reach_low = 1;
char reach_gap[5UL << 29];
int reach_high;
