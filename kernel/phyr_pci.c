// SPDX-License-Identifier: GPL-2.0
/*
 * phyr guest kernel driver: the PCI driver. Probe, queues in coherent
 * memory, command submission and completion (MSI-X or polled with shadow
 * doorbells), device reset, removal. Register-level rules: docs/ABI.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/pci-p2pdma.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>

#include "phyr.h"

static unsigned int queue_depth = 64;
module_param(queue_depth, uint, 0444);
MODULE_PARM_DESC(queue_depth, "SQ and CQ entries per queue, power of two (default 64)");

static unsigned int poll_queues = 1;
module_param(poll_queues, uint, 0444);
MODULE_PARM_DESC(poll_queues, "Number of queues (the last ones) completed by polling with shadow doorbells, no interrupt (default 1)");

static bool publish_p2pmem = true;
module_param(publish_p2pmem, bool, 0444);
MODULE_PARM_DESC(publish_p2pmem, "Publish each BAR2 as p2pmem for other drivers (default true)");

static inline void __iomem *phyr_qreg(struct phyr_queue *q, unsigned int reg)
{
	return q->ep->regs + PHYR_Q_BASE(q->index) + reg;
}

static void phyr_queue_fill_cqe(struct phyr_cqe *out,
				const struct phyr_hw_cqe *e)
{
	out->command_id = le16_to_cpu(e->command_id);
	out->status = le16_to_cpu(e->status);
	out->sq_head = le16_to_cpu(e->sq_head);
	out->fault_list = e->fault_list;
	out->phase = e->phase;
	out->segment = le32_to_cpu(e->segment);
	out->reserved = le32_to_cpu(e->reserved);
	out->result = le64_to_cpu(e->result);
	out->fault_addr = le64_to_cpu(e->fault_addr);
}

static void phyr_queue_complete(struct phyr_queue *q,
				const struct phyr_hw_cqe *e)
{
	u16 cid = le16_to_cpu(e->command_id);
	u32 slot = cid & (q->depth - 1);
	struct phyr_cmd *c = q->slots[slot];

	if (!c || c->cid != cid) {
		dev_warn_ratelimited(&q->ep->pdev->dev,
				     "queue %u: completion for unknown command id %u\n",
				     q->index, cid);
		return;
	}
	phyr_queue_fill_cqe(&c->cqe, e);
	c->error = 0;
	q->slots[slot] = NULL;
	q->inflight--;
	complete(&c->done);
	wake_up(&q->slot_wait);
}

/*
 * Consume every completion whose phase bit is the expected one. The device
 * writes the body first and the phase byte last with release ordering
 * (ABI section 6): dma_rmb() keeps the body reads after the phase read.
 * With @ring, hand the slots back (not while the queue is off: CQ_SIZE
 * may read 0 then and the doorbell would be an ignored access).
 */
static unsigned int phyr_queue_drain(struct phyr_queue *q, bool ring)
{
	unsigned int n = 0;

	lockdep_assert_held(&q->lock);
	for (;;) {
		struct phyr_hw_cqe *e = &q->cq[q->cq_head];

		if ((READ_ONCE(e->phase) & 1) != q->phase)
			break;
		dma_rmb();
		phyr_queue_complete(q, e);
		if (++q->cq_head == q->depth) {
			q->cq_head = 0;
			q->phase ^= 1;
		}
		n++;
	}
	if (n && ring) {
		if (q->polled) {
			/* entries read before the slots are handed back */
			dma_mb();
			WRITE_ONCE(q->shadow[1], cpu_to_le32(q->cq_head));
		} else {
			writel(q->cq_head, q->ep->regs + PHYR_DB_CQ_HEAD(q->index));
		}
	}
	return n;
}

static irqreturn_t phyr_irq(int irq, void *data)
{
	struct phyr_queue *q = data;
	unsigned int n = 0;

	spin_lock(&q->lock);
	if (q->running)
		n = phyr_queue_drain(q, true);
	spin_unlock(&q->lock);
	return n ? IRQ_HANDLED : IRQ_NONE;
}

/* Stop handing out slots; the caller then stops the device side. */
static void phyr_queue_halt(struct phyr_queue *q)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	q->running = false;
	spin_unlock_irqrestore(&q->lock, flags);
}

/*
 * After the device stopped the queue (Q_CTRL cleared or CTRL.RESET, and a
 * register read to make sure it was taken): collect what it posted,
 * typically the ABORTED_* completion of the command that ran, and finish
 * every other outstanding command with @error.
 */
static void phyr_queue_reap(struct phyr_queue *q, int error)
{
	unsigned long flags;
	u32 i;

	spin_lock_irqsave(&q->lock, flags);
	phyr_queue_drain(q, false);
	for (i = 0; i < q->depth; i++) {
		struct phyr_cmd *c = q->slots[i];

		if (!c)
			continue;
		c->error = error;
		q->slots[i] = NULL;
		complete(&c->done);
	}
	q->inflight = 0;
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_all(&q->slot_wait);
}

/* Program and enable a stopped queue (ABI section 3, steps 1-2). */
static int phyr_queue_start(struct phyr_queue *q)
{
	struct device *dev = &q->ep->pdev->dev;
	unsigned long flags;
	u32 ctrl, status;

	memset(q->cq, 0, q->depth * sizeof(*q->cq));
	if (q->shadow) {
		WRITE_ONCE(q->shadow[0], 0);
		WRITE_ONCE(q->shadow[1], 0);
	}
	q->sq_tail = 0;
	q->cq_head = 0;
	q->phase = 1;

	lo_hi_writeq(q->sq_dma, phyr_qreg(q, PHYR_Q_SQ_BASE));
	lo_hi_writeq(q->cq_dma, phyr_qreg(q, PHYR_Q_CQ_BASE));
	writel(q->depth, phyr_qreg(q, PHYR_Q_SQ_SIZE));
	writel(q->depth, phyr_qreg(q, PHYR_Q_CQ_SIZE));
	writel(q->vector, phyr_qreg(q, PHYR_Q_MSIX_VECTOR));
	ctrl = PHYR_Q_CTRL_ENABLE;
	if (q->polled) {
		lo_hi_writeq(q->shadow_dma, phyr_qreg(q, PHYR_Q_SHADOW_BASE));
		ctrl |= PHYR_Q_CTRL_POLL;
	} else {
		ctrl |= PHYR_Q_CTRL_IRQ;
	}
	writel(ctrl, phyr_qreg(q, PHYR_Q_CTRL));
	status = readl(phyr_qreg(q, PHYR_Q_STATUS));
	if (status != PHYR_Q_STATUS_ENABLED) {
		dev_err(dev, "queue %u did not start: Q_STATUS %#x (status code %#x)\n",
			q->index, status, PHYR_Q_STATUS_CODE(status));
		return -EIO;
	}

	spin_lock_irqsave(&q->lock, flags);
	q->running = true;
	spin_unlock_irqrestore(&q->lock, flags);
	wake_up_all(&q->slot_wait);
	return 0;
}

static int phyr_ep_start(struct phyr_ep *ep)
{
	unsigned int i;
	int ret;

	lockdep_assert_held(&ep->ctrl_lock);
	for (i = 0; i < ep->nr_queues; i++) {
		ret = phyr_queue_start(&ep->queues[i]);
		if (ret)
			return ret;
	}
	writel(PHYR_CTRL_ENABLE, ep->regs + PHYR_REG_CTRL);
	return 0;
}

/*
 * Reset the device (CTRL.RESET aborts what runs with ABORTED_RESET) and,
 * unless the endpoint is going away, set every queue up again.
 */
int phyr_ep_reset(struct phyr_ep *ep)
{
	unsigned int i;
	int ret = 0;
	bool gone;

	mutex_lock(&ep->ctrl_lock);
	/* read under the lock: no reset after removal began starts a queue */
	gone = READ_ONCE(ep->gone);
	for (i = 0; i < ep->nr_queues; i++)
		phyr_queue_halt(&ep->queues[i]);
	writel(PHYR_CTRL_RESET, ep->regs + PHYR_REG_CTRL);
	readl(ep->regs + PHYR_REG_STATUS);	/* the reset is complete */
	for (i = 0; i < ep->nr_queues; i++)
		phyr_queue_reap(&ep->queues[i], gone ? -ENODEV : -ECANCELED);
	if (!gone)
		ret = phyr_ep_start(ep);
	mutex_unlock(&ep->ctrl_lock);
	return ret;
}

static bool phyr_cmd_pending(struct phyr_queue *q, struct phyr_cmd *c)
{
	unsigned long flags;
	bool pending;

	spin_lock_irqsave(&q->lock, flags);
	pending = q->slots[c->cid & (q->depth - 1)] == c;
	spin_unlock_irqrestore(&q->lock, flags);
	return pending;
}

/*
 * @c timed out or its submitter was killed: stop the queue so the device
 * moves no more data for it (ABI section 3, "Disabling a queue"), collect
 * the ABORTED_QUEUE_DISABLED completion, cancel the rest, start again.
 * Returns true if the queue was restarted for @c.
 */
static bool phyr_queue_abort(struct phyr_queue *q, struct phyr_cmd *c)
{
	struct phyr_ep *ep = q->ep;
	bool restarted = false;

	mutex_lock(&ep->ctrl_lock);
	if (phyr_cmd_pending(q, c)) {
		phyr_queue_halt(q);
		writel(0, phyr_qreg(q, PHYR_Q_CTRL));
		readl(phyr_qreg(q, PHYR_Q_STATUS));
		phyr_queue_reap(q, -ECANCELED);
		if (!READ_ONCE(ep->gone) && phyr_queue_start(q))
			dev_err(&ep->pdev->dev, "queue %u stays off\n", q->index);
		restarted = true;
	}
	mutex_unlock(&ep->ctrl_lock);
	return restarted;
}

static bool phyr_queue_has_room(struct phyr_queue *q)
{
	unsigned long flags;
	bool room;

	spin_lock_irqsave(&q->lock, flags);
	room = q->running && q->inflight + 1 < q->depth;
	spin_unlock_irqrestore(&q->lock, flags);
	return room;
}

static int phyr_queue_poll(struct phyr_queue *q, struct phyr_cmd *c,
			   unsigned long deadline)
{
	unsigned long flags;

	for (;;) {
		spin_lock_irqsave(&q->lock, flags);
		if (q->running)
			phyr_queue_drain(q, true);
		spin_unlock_irqrestore(&q->lock, flags);
		if (completion_done(&c->done))
			return 0;
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		if (fatal_signal_pending(current))
			return -EINTR;
		usleep_range(10, 50);
	}
}

/*
 * Put @cmd on @q and wait for its completion. Returns 0 when the device
 * posted one (c->cqe), with PHYR_SUBMIT_TIMED_OUT in @out_flags if it came
 * from the abort after a timeout; -ETIMEDOUT, -EINTR, -ECANCELED (a reset
 * cancelled it) or -ENODEV (the endpoint is going away) otherwise. On
 * return the device is done with the command: its memory may be unmapped.
 */
int phyr_queue_submit(struct phyr_queue *q, struct phyr_hw_cmd *cmd,
		      struct phyr_cmd *c, unsigned int timeout_ms,
		      u32 *out_flags)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);
	struct phyr_ep *ep = q->ep;
	unsigned long flags;
	long left;
	u32 slot;
	int ret;

	init_completion(&c->done);
	c->error = -EINPROGRESS;

	spin_lock_irqsave(&q->lock, flags);
	while (!q->running || q->inflight + 1 >= q->depth) {
		spin_unlock_irqrestore(&q->lock, flags);
		if (READ_ONCE(ep->gone))
			return -ENODEV;
		left = (long)(deadline - jiffies);
		if (left <= 0)
			return -ETIMEDOUT;
		left = wait_event_killable_timeout(q->slot_wait,
						   READ_ONCE(ep->gone) ||
						   phyr_queue_has_room(q),
						   left);
		if (left < 0)
			return -EINTR;
		spin_lock_irqsave(&q->lock, flags);
	}
	for (slot = 0; slot < q->depth; slot++)
		if (!q->slots[slot])
			break;
	/* ids below depth never occur: the slot bits alone would repeat soonest */
	if (!(u16)(q->seq << ilog2(q->depth)))
		q->seq++;
	c->cid = (u16)(q->seq++ << ilog2(q->depth)) | slot;
	q->slots[slot] = c;
	q->inflight++;
	cmd->command_id = cpu_to_le16(c->cid);
	memcpy(&q->sq[q->sq_tail], cmd, sizeof(*cmd));
	q->sq_tail = (q->sq_tail + 1) & (q->depth - 1);
	if (q->polled) {
		/* the entry (and its lists) before the shadow tail */
		dma_wmb();
		WRITE_ONCE(q->shadow[0], cpu_to_le32(q->sq_tail));
	} else {
		/* writel() orders the coherent-memory writes before it */
		writel(q->sq_tail, ep->regs + PHYR_DB_SQ_TAIL(q->index));
	}
	spin_unlock_irqrestore(&q->lock, flags);

	if (q->polled) {
		ret = phyr_queue_poll(q, c, deadline);
	} else {
		left = (long)(deadline - jiffies);
		left = wait_for_completion_killable_timeout(&c->done,
							    max(left, 1L));
		ret = left > 0 ? 0 : left == 0 ? -ETIMEDOUT : -EINTR;
	}
	if (ret) {
		if (phyr_queue_abort(q, c) && c->error == 0)
			*out_flags |= PHYR_SUBMIT_TIMED_OUT;
		/* finished now, by the device, the abort or a reset */
		wait_for_completion(&c->done);
	}
	if (c->error)
		return ret ? ret : c->error;
	return 0;
}

static int phyr_queue_init(struct phyr_ep *ep, unsigned int index,
			   bool polled)
{
	struct phyr_queue *q = &ep->queues[index];
	struct device *dev = &ep->pdev->dev;
	int ret;

	q->ep = ep;
	q->index = index;
	q->polled = polled;
	spin_lock_init(&q->lock);
	init_waitqueue_head(&q->slot_wait);
	q->depth = min(queue_depth, ep->max_q_entries);
	q->slots = devm_kcalloc(dev, q->depth, sizeof(*q->slots), GFP_KERNEL);
	q->sq = dmam_alloc_coherent(dev, q->depth * sizeof(*q->sq),
				    &q->sq_dma, GFP_KERNEL);
	q->cq = dmam_alloc_coherent(dev, q->depth * sizeof(*q->cq),
				    &q->cq_dma, GFP_KERNEL);
	if (!q->slots || !q->sq || !q->cq)
		return -ENOMEM;
	if (polled) {
		q->shadow = dmam_alloc_coherent(dev, 2 * sizeof(*q->shadow),
						&q->shadow_dma, GFP_KERNEL);
		if (!q->shadow)
			return -ENOMEM;
		return 0;
	}
	q->vector = index % ep->nr_vectors;
	ret = devm_request_irq(dev, pci_irq_vector(ep->pdev, q->vector),
			       phyr_irq, IRQF_SHARED, dev_name(dev), q);
	if (ret)
		dev_err(dev, "queue %u: no interrupt (vector %u): %d\n",
			index, q->vector, ret);
	return ret;
}

static int phyr_read_regs(struct phyr_ep *ep)
{
	struct pci_dev *pdev = ep->pdev;
	u32 id, nr_queues;

	id = readl(ep->regs + PHYR_REG_ID);
	ep->version = readl(ep->regs + PHYR_REG_VERSION);
	if (id != PHYR_ID_VALUE || PHYR_VERSION_MAJOR(ep->version) != 1) {
		dev_err(&pdev->dev, "not a phyr 1.x endpoint: ID %#x VERSION %#x\n",
			id, ep->version);
		return -ENODEV;
	}
	nr_queues = readl(ep->regs + PHYR_REG_NUM_QUEUES);
	ep->max_q_entries = readl(ep->regs + PHYR_REG_MAX_Q_ENTRIES);
	ep->id = readl(ep->regs + PHYR_REG_ENDPOINT_ID);
	ep->switch_id = readl(ep->regs + PHYR_REG_SWITCH_ID);
	ep->bar2_size = lo_hi_readq(ep->regs + PHYR_REG_BAR2_SIZE);
	ep->max_list = readl(ep->regs + PHYR_REG_MAX_LIST);
	ep->max_chain = readl(ep->regs + PHYR_REG_MAX_CHAIN);

	if (!nr_queues || ep->max_q_entries < PHYR_MAX_Q_ENTRIES_MIN) {
		dev_err(&pdev->dev, "no usable queues: NUM_QUEUES %u MAX_QUEUE_ENTRIES %u\n",
			nr_queues, ep->max_q_entries);
		return -ENODEV;
	}
	if (!is_power_of_2(ep->max_q_entries))
		ep->max_q_entries = rounddown_pow_of_two(ep->max_q_entries);
	ep->nr_queues = min_t(u32, nr_queues, PHYR_MAX_QUEUES);
	if (ep->bar2_size != pci_resource_len(pdev, PHYR_BAR_MEM))
		dev_warn(&pdev->dev, "BAR2_SIZE %#llx but BAR2 is %#llx bytes\n",
			 ep->bar2_size,
			 (u64)pci_resource_len(pdev, PHYR_BAR_MEM));
	return 0;
}

static void phyr_register_p2pmem(struct phyr_ep *ep)
{
	struct pci_dev *pdev = ep->pdev;
	int ret;

	if (!IS_ENABLED(CONFIG_PCI_P2PDMA))
		return;
	ret = pci_p2pdma_add_resource(pdev, PHYR_BAR_MEM, 0, 0);
	if (ret) {
		dev_warn(&pdev->dev, "BAR2 not registered as p2pmem: %d\n", ret);
		return;
	}
	ep->p2pmem = true;
	if (publish_p2pmem) {
		pci_p2pmem_publish(pdev, true);
		ep->published = true;
	}
}

/* GUEST_ERRORS (ABI 1.1): register accesses the device ignored */
static u32 phyr_guest_errors(struct phyr_ep *ep)
{
	if ((ep->version & 0xffff) < 1)
		return 0;
	return readl(ep->regs + PHYR_REG_GUEST_ERRORS);
}

static void phyr_ep_devm_put(void *data)
{
	phyr_ep_put(data);
}

static int phyr_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	unsigned int i, nr_polled, nr_irq;
	u32 errors;
	struct phyr_ep *ep;
	int ret;

	if (!is_power_of_2(queue_depth) || queue_depth < 2) {
		dev_err(dev, "queue_depth %u is not a power of two >= 2\n",
			queue_depth);
		return -EINVAL;
	}

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ep = kzalloc(sizeof(*ep), GFP_KERNEL);
	if (!ep)
		return -ENOMEM;
	kref_init(&ep->ref);
	ep->pdev = pci_dev_get(pdev);
	init_rwsem(&ep->users);
	mutex_init(&ep->ctrl_lock);
	atomic_set(&ep->nr_objs, 0);
	init_waitqueue_head(&ep->objs_wait);
	/*
	 * The binding's reference goes last, after the interrupts and rings
	 * (devres runs in reverse); ioctls may hold the struct longer.
	 */
	ret = devm_add_action_or_reset(dev, phyr_ep_devm_put, ep);
	if (ret)
		return ret;

	ep->regs = pcim_iomap_region(pdev, PHYR_BAR_REGS, KBUILD_MODNAME);
	if (IS_ERR(ep->regs))
		return PTR_ERR(ep->regs);
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	/* the device takes ranges up to 4 GiB - 1 */
	dma_set_max_seg_size(dev, PHYR_MAX_RANGE_LEN);
	ret = phyr_read_regs(ep);
	if (ret)
		return ret;

	/* quiesce whatever ran before us, then bus mastering */
	writel(PHYR_CTRL_RESET, ep->regs + PHYR_REG_CTRL);
	readl(ep->regs + PHYR_REG_STATUS);
	pci_set_master(pdev);

	nr_polled = min(poll_queues, ep->nr_queues);
	nr_irq = ep->nr_queues - nr_polled;
	if (nr_irq) {
		ret = pci_alloc_irq_vectors(pdev, 1,
					    min_t(u32, nr_irq, PHYR_MSIX_VECTORS),
					    PCI_IRQ_MSIX);
		if (ret < 0) {
			dev_err(dev, "no MSI-X vectors: %d\n", ret);
			return ret;
		}
		ep->nr_vectors = ret;
	}
	for (i = 0; i < ep->nr_queues; i++) {
		ret = phyr_queue_init(ep, i, i >= nr_irq);
		if (ret)
			return ret;
	}

	errors = phyr_guest_errors(ep);
	mutex_lock(&ep->ctrl_lock);
	ret = phyr_ep_start(ep);
	mutex_unlock(&ep->ctrl_lock);
	if (ret)
		goto err_reset;
	if (phyr_guest_errors(ep) != errors)
		dev_warn(dev, "the device ignored %u register accesses of the setup\n",
			 phyr_guest_errors(ep) - errors);

	phyr_register_p2pmem(ep);
	pci_set_drvdata(pdev, ep);
	ret = phyr_ep_register(ep);
	if (ret)
		goto err_unpublish;

	dev_info(dev, "endpoint %u (switch %u), %u queues (%u polled) of %u entries, BAR2 %#llx bytes%s\n",
		 ep->id, ep->switch_id, ep->nr_queues, nr_polled,
		 ep->queues[0].depth, ep->bar2_size,
		 ep->p2pmem ? " as p2pmem" : "");
	return 0;

err_unpublish:
	if (ep->published)
		pci_p2pmem_publish(pdev, false);
err_reset:
	writel(PHYR_CTRL_RESET, ep->regs + PHYR_REG_CTRL);
	readl(ep->regs + PHYR_REG_STATUS);
	return ret;
}

static void phyr_remove(struct pci_dev *pdev)
{
	struct phyr_ep *ep = pci_get_drvdata(pdev);

	/* no new users; abort every command; wait for the ioctls inside */
	phyr_ep_unregister(ep);
	phyr_ep_reset(ep);
	down_write(&ep->users);
	up_write(&ep->users);

	/* drop every object naming the endpoint, wait for the last user */
	phyr_revoke_ep(ep);
	while (!wait_event_timeout(ep->objs_wait,
				   !atomic_read(&ep->nr_objs), 10 * HZ))
		dev_warn(&pdev->dev, "waiting for %d mappings and buffers\n",
			 atomic_read(&ep->nr_objs));

	if (ep->published)
		pci_p2pmem_publish(pdev, false);
}

static void phyr_shutdown(struct pci_dev *pdev)
{
	struct phyr_ep *ep = pci_get_drvdata(pdev);

	/* no DMA across kexec or reboot */
	writel(PHYR_CTRL_RESET, ep->regs + PHYR_REG_CTRL);
	readl(ep->regs + PHYR_REG_STATUS);
}

void phyr_ep_release(struct kref *ref)
{
	struct phyr_ep *ep = container_of(ref, struct phyr_ep, ref);

	pci_dev_put(ep->pdev);
	kfree(ep);
}

static const struct pci_device_id phyr_ids[] = {
	{ PCI_DEVICE(PHYR_PCI_VENDOR, PHYR_PCI_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, phyr_ids);

static struct pci_driver phyr_pci_driver = {
	.name = KBUILD_MODNAME,
	.id_table = phyr_ids,
	.probe = phyr_probe,
	.remove = phyr_remove,
	.shutdown = phyr_shutdown,
};

int phyr_pci_init(void)
{
	return pci_register_driver(&phyr_pci_driver);
}

void phyr_pci_exit(void)
{
	pci_unregister_driver(&phyr_pci_driver);
}
