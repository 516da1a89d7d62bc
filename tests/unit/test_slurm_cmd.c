/* Slurm's commands over ssh (slurm_cmd.c): the command lines, and the reading of what Slurm
 * 22.05's squeue, scontrol, sacct, sbatch, scancel and sinfo really print (captured from the
 * test cluster tests/e2e/slurm.py starts). */
#include "herd/slurm_cmd.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static enum slurm_verdict run(enum slurm_cmd_kind k, int status, const char *out, const char *err,
                              struct slurm_reply *rep) {
  return slurm_cmd_parse(k, status, out, out ? strlen(out) : 0, err, err ? strlen(err) : 0, rep);
}

static void test_commands(void) {
  char *c = slurm_cmd_list();
  CHECK(!strcmp(c, "SLURM_TIME_FORMAT=%s squeue --me --noheader --states=all --format='%i|%T|%r|%B|%V|%S|%e|%k'"),
        "list: %s", c);
  free(c);
  c = slurm_cmd_cancel(42);
  CHECK(!strcmp(c, "scancel 42"), "cancel: %s", c);
  free(c);
  c = slurm_cmd_node("gpu'1");
  CHECK(!strcmp(c, "sinfo --noheader --Node --format='%N|%o' --nodes='gpu'\\''1'"), "node quoted: %s", c);
  free(c);
  c = slurm_cmd_job(7);
  CHECK(strstr(c, "scontrol --oneliner show job 7 || sacct") && strstr(c, "--jobs=7"), "job: %s", c);
  free(c);

  const char *env[] = {"MODEL=llama 3", "QUOTE=it's", "HERD_SERVICE=web", NULL};
  struct slurm_cmd_submit k = {.name = "herd.web",
                               .comment = "herd:abc:web:3",
                               .cwd = "/scratch/x y",
                               .output = "/scratch/herd.web-%j.out",
                               .partition = "gpu",
                               .time_limit = 60,
                               .cpus_per_task = 4,
                               .memory_mb = 2048,
                               .gres = "gpu:1",
                               .mcs_label = true,
                               .env = env};
  char err[200];
  c = slurm_cmd_submit(&k, err, sizeof err);
  CHECK(c && !strcmp(c, "MODEL='llama 3' QUOTE='it'\\''s' HERD_SERVICE='web' sbatch --parsable "
                        "--export=MODEL,QUOTE,HERD_SERVICE --job-name='herd.web' --comment='herd:abc:web:3' "
                        "--mcs-label='herd:abc:web:3' --chdir='/scratch/x y' --output='/scratch/herd.web-%j.out' "
                        "--partition='gpu' --nodes='1' --ntasks=1 --time=60 --cpus-per-task=4 --mem=2048M "
                        "--gres='gpu:1'"),
        "submit: %s", c ? c : "(null)");
  free(c);
  const char *bad[] = {"A-B=1", NULL};
  k.env = bad;
  c = slurm_cmd_submit(&k, err, sizeof err);
  CHECK(!c && strstr(err, "A-B"), "a name a shell cannot export is refused: %s", err);
  free(c);
}

static void test_list(void) {
  struct slurm_reply rep;
  /* squeue --me -h -t all -o '%i|%T|%r|%B|%V|%S|%e|%k' with SLURM_TIME_FORMAT=%s, 22.05.8 */
  const char *out = "4|CANCELLED|None|vm|1796459730|1796459732|1796459785|herd:x:long:1\n"
                    "5|COMPLETED|None|vm|1796459785|1796459786|1796459788|(null)\n"
                    "1|FAILED|NonZeroExitCode|vm|1796459730|1796459731|1796459731|herd:x:svc1:1\n"
                    "6|PENDING|BeginTime|n/a|1796459840|1796463440|NONE|(null)\n"
                    "7|RUNNING|None|vm|1796459730|1796459732|NONE|a|comment|with|bars\n"
                    "8_1|PENDING|None|n/a|1|2|NONE|array task: skipped\n"
                    "Welcome to the cluster!\n";
  CHECK(run(SC_LIST, 0, out, "", &rep) == SCV_OK, "listing read");
  CHECK(rep.njobs == 5, "5 jobs (array task and banner skipped): %zu", rep.njobs);
  if (rep.njobs == 5) {
    CHECK(rep.jobs[0].job_id == 4 && rep.jobs[0].base == SJ_CANCELLED && rep.jobs[0].end_time == 1796459785 &&
              !strcmp(rep.jobs[0].comment, "herd:x:long:1") && !rep.jobs[0].reason[0],
          "cancelled job");
    CHECK(!rep.jobs[1].comment[0], "(null) comment is empty");
    CHECK(rep.jobs[2].base == SJ_FAILED && !strcmp(rep.jobs[2].reason, "NonZeroExitCode") && !rep.jobs[2].exit_known,
          "failed job: no exit code in squeue");
    CHECK(rep.jobs[3].base == SJ_PENDING && !rep.jobs[3].batch_host[0] && rep.jobs[3].start_time == 1796463440 &&
              rep.jobs[3].end_time == 0,
          "pending job: expected start, no host");
    CHECK(!strcmp(rep.jobs[4].comment, "a|comment|with|bars"), "comment keeps its bars: %s", rep.jobs[4].comment);
    struct slurm_outcome o;
    slurm_job_outcome(&rep.jobs[4], &o);
    CHECK(o.phase == SP_RUNNING, "running");
  }
  slurm_reply_free(&rep);
  CHECK(run(SC_LIST, 0, "", "", &rep) == SCV_OK && rep.njobs == 0, "empty listing");
  slurm_reply_free(&rep);
  CHECK(run(SC_LIST, 1, "",
            "squeue: error: slurm_receive_msg: Socket timed out on send/recv operation\n"
            "slurm_load_jobs error: Socket timed out on send/recv operation\n",
            &rep) == SCV_TROUBLE &&
            rep.error_code == -1 &&
            !strcmp(rep.error, "slurm_load_jobs error: Socket timed out on send/recv operation"),
        "controller trouble: %s", rep.error);
  slurm_reply_free(&rep);
  CHECK(run(SC_LIST, 127, "", "sh: 1: squeue: not found\n", &rep) == SCV_TROUBLE, "no squeue");
  slurm_reply_free(&rep);
  CHECK(run(SC_LIST, 124, "", "", &rep) == SCV_TROUBLE && strstr(rep.error, "124"), "timeout: %s", rep.error);
  slurm_reply_free(&rep);
}

static void test_job(void) {
  struct slurm_reply rep;
  const char *sc =
      "JobId=4 JobName=herd.long UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901756 Nice=0 "
      "Account=(null) QOS=(null) JobState=CANCELLED Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 "
      "Reboot=0 ExitCode=0:15 RunTime=00:00:53 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=1796459730 "
      "EligibleTime=1796459730 AccrueTime=1796459730 StartTime=1796459732 EndTime=1796459785 Deadline=N/A "
      "SuspendTime=None SecsPreSuspend=0 LastSchedEval=1796459732 Scheduler=Main Partition=debug "
      "AllocNode:Sid=localhost:9647 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 "
      "NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* "
      "NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) "
      "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp "
      "Comment=herd:x:long:1 with spaces  StdErr=/tmp/slurm-4.out StdIn=/dev/null StdOut=/tmp/slurm-4.out Power= \n";
  CHECK(run(SC_JOB, 0, sc, "", &rep) == SCV_OK && rep.njobs == 1, "scontrol read");
  if (rep.njobs == 1) {
    struct slurm_job *j = &rep.jobs[0];
    CHECK(j->job_id == 4 && j->base == SJ_CANCELLED && j->exit_known && j->exit_code == -1 && j->exit_signal == 15,
          "cancelled by signal 15");
    CHECK(!strcmp(j->comment, "herd:x:long:1 with spaces"), "comment: '%s'", j->comment);
    CHECK(!strcmp(j->batch_host, "vm") && !strcmp(j->std_out, "/tmp/slurm-4.out") && !strcmp(j->partition, "debug"),
          "host, stdout, partition");
    CHECK(j->start_time == 1796459732 && j->end_time == 1796459785, "times");
  }
  slurm_reply_free(&rep);
  const char *failed = "JobId=1 JobName=herd.svc1 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 BatchHost=vm\n";
  CHECK(run(SC_JOB, 0, failed, "", &rep) == SCV_OK && rep.njobs == 1 && rep.jobs[0].exit_code == 3, "exit 3");
  if (rep.njobs == 1) {
    struct slurm_outcome o;
    slurm_job_outcome(&rep.jobs[0], &o);
    CHECK(o.phase == SP_ENDED && o.end == S_FAILED && o.code == 3, "FAILED exit 3: %s", o.msg);
  }
  slurm_reply_free(&rep);
  /* scontrol forgot it; sacct has it */
  CHECK(run(SC_JOB, 0, "9|COMPLETED|vm|1796459730|1796459731|1796459790|0:0\n",
            "slurm_load_jobs error: Invalid job id specified\n", &rep) == SCV_OK &&
            rep.njobs == 1 && rep.jobs[0].base == SJ_COMPLETED && rep.jobs[0].exit_code == 0 &&
            !strcmp(rep.jobs[0].batch_host, "vm"),
        "sacct row");
  slurm_reply_free(&rep);
  CHECK(run(SC_JOB, 0, "9|CANCELLED by 1000|None assigned|1|0|5|0:0\n", "", &rep) == SCV_OK &&
            rep.jobs[0].base == SJ_CANCELLED && !rep.jobs[0].batch_host[0],
        "sacct 'CANCELLED by uid', never ran");
  slurm_reply_free(&rep);
  /* neither knows it (accounting disabled: sacct fails) */
  CHECK(run(SC_JOB, 1, "", "slurm_load_jobs error: Invalid job id specified\nSlurm accounting storage is disabled\n",
            &rep) == SCV_GONE &&
            rep.error_code == 2017,
        "gone");
  slurm_reply_free(&rep);
  CHECK(run(SC_JOB, 0, "", "slurm_load_jobs error: Invalid job id specified\n", &rep) == SCV_GONE, "gone: no row");
  slurm_reply_free(&rep);
  CHECK(run(SC_JOB, 0, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", &rep) ==
            SCV_TROUBLE,
        "no row, but scontrol could not ask: not gone");
  slurm_reply_free(&rep);
  CHECK(run(SC_JOB, 1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", &rep) ==
            SCV_TROUBLE,
        "controller down");
  slurm_reply_free(&rep);
}

static void test_submit_cancel_node(void) {
  struct slurm_reply rep;
  CHECK(run(SC_SUBMIT, 0, "1234\n", "", &rep) == SCV_OK && rep.job_id == 1234, "job id");
  slurm_reply_free(&rep);
  CHECK(run(SC_SUBMIT, 0, "1235;cluster2\n", "sbatch: warning: something\n", &rep) == SCV_OK && rep.job_id == 1235,
        "federated id");
  slurm_reply_free(&rep);
  CHECK(run(SC_SUBMIT, 0, "", "", &rep) == SCV_TROUBLE, "no id: no decision");
  slurm_reply_free(&rep);
  CHECK(run(SC_SUBMIT, 1, "",
            "sbatch: error: invalid partition specified: nopart\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
            &rep) == SCV_REFUSED &&
            !strcmp(rep.error, "sbatch: error: Batch job submission failed: Invalid partition name specified"),
        "refused: %s", rep.error);
  slurm_reply_free(&rep);
  CHECK(run(SC_SUBMIT, 1, "",
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
            &rep) == SCV_TROUBLE,
        "controller down: no decision (the job may or may not exist)");
  slurm_reply_free(&rep);
  CHECK(run(SC_CANCEL, 0, "", "", &rep) == SCV_OK, "cancel");
  slurm_reply_free(&rep);
  CHECK(run(SC_CANCEL, 1, "", "scancel: error: Kill job error on job id 99: Invalid job id specified\n", &rep) ==
            SCV_GONE,
        "cancel gone");
  slurm_reply_free(&rep);
  char addr[64];
  CHECK(slurm_cmd_node_addr("vm|127.0.0.1\n", 13, "vm", addr, sizeof addr) && !strcmp(addr, "127.0.0.1"), "addr");
  CHECK(!slurm_cmd_node_addr("vm2|10.0.0.2\n", 13, "vm", addr, sizeof addr), "other node");
  CHECK(!slurm_cmd_node_addr("vm|(null)\n", 10, "vm", addr, sizeof addr), "no address");
  CHECK(!slurm_cmd_node_addr(NULL, 0, "vm", addr, sizeof addr), "no output");
}

int main(void) {
  test_commands();
  test_list();
  test_job();
  test_submit_cancel_node();
  printf("test_slurm_cmd: %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
