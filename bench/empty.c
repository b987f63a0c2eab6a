/* Exits at once. bench/run_compute.sh times this to measure each machine's
 * fixed start-up and shut-down cost (process start, loading the ELF,
 * device setup), which it subtracts from the compute benchmark's time. */

int main(void)
{
    return 0;
}
