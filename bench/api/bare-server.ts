// The anchor of the API benchmark: bare Express 5 and pg, one route that reads a course by its
// primary key — no middleware, no cache, no auth. Started as its own process by api.bench.ts.
import express from 'express';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const app = express();
app.get('/courses/:id', async (req, res) => {
  const { rows } = await pool.query(
    'SELECT id, title, description, status, instructor_id, published_at, created_at, updated_at FROM courses WHERE id = $1',
    [req.params.id],
  );
  if (!rows[0]) return void res.status(404).json({ error: 'not found' });
  res.json(rows[0]);
});
const server = app.listen(Number(process.env.PORT), () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => {
  server.close();
  void pool.end();
});
